"""lenscheck.norms: the re-applied norm equals the model's own norm, and the right one is chosen."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn

from lenscheck.norms import (
    NormSpec,
    UnsupportedNormError,
    apply_norm,
    apply_norm_or_skip,
    detect_model_architecture,
    get_correct_norm_module,
    lens_norm_modules,
    norm_spec,
    unwrap_norm,
)
from lenscheck.strategies import (
    NormCase,
    available_norm_kinds,
    norm_kind,
    norm_modules,
    residuals,
    residuals_for,
    unavailable_norm_kinds,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

ALL_KINDS = available_norm_kinds()


def assert_norm_close(
    actual: torch.Tensor, expected: torch.Tensor, extra_atol: torch.Tensor | float = 0.0
) -> None:
    """fp32: rtol 1e-5. bf16/fp16: within two units of the dtype's resolution (both sides
    compute statistics in fp32 and round once or twice to the output dtype).
    ``extra_atol`` (per row) covers LayerNorm's conditioning on near-constant rows."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    a, e = actual.double(), expected.double()
    assert torch.isfinite(a).all()
    scale = 1.0 + float(e.abs().max()) if e.numel() else 1.0
    if expected.dtype == torch.float32:
        rtol, atol = 1e-5, 1e-6 * scale
    else:
        rtol, atol = 2 * torch.finfo(expected.dtype).eps, 1e-5 * scale
    bound = atol + extra_atol + rtol * e.abs()
    bad = (a - e).abs() > bound
    if bad.any():
        i = tuple(int(j) for j in bad.nonzero()[0])
        raise AssertionError(
            f"{int(bad.sum())}/{bad.numel()} elements differ; first at {i}: lens {a[i].item()!r} "
            f"vs module {e[i].item()!r} (allowed {bound[i].item():.3g}); max abs diff "
            f"{(a - e).abs().max().item():.3g}"
        )


def layernorm_conditioning(x: torch.Tensor, case: NormCase) -> torch.Tensor | float:
    """How far two correct fp32 LayerNorms may disagree on a row: rounding the row mean
    (|mean| * 2^-23) is amplified by 1/sqrt(var + eps) and scaled by gamma. Zero for RMS."""
    if case.family != "layernorm":
        return 0.0
    spec = norm_spec(case.module)
    gamma = 1.0 if spec.weight is None else float(spec.weight.float().abs().max())
    x64 = x.double()
    var = x64.var(-1, correction=0, keepdim=True)
    eps = spec.eps or 0.0
    return 4 * 2.0**-23 * x64.mean(-1, keepdim=True).abs() / (var + eps).sqrt() * gamma


def _forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = module(x)
    assert isinstance(out, torch.Tensor)
    return out


# ------------------------------------------------------------------ property: lens == module


def test_every_required_norm_class_is_exercised() -> None:
    names = {k.name for k in ALL_KINDS}
    required = {
        "torch.nn.LayerNorm",
        "torch.nn.LayerNorm(bias=False)",
        "torch.nn.LayerNorm(elementwise_affine=False)",
        "torch.nn.RMSNorm",
        "transformers.LlamaRMSNorm",
        "transformers.GemmaRMSNorm",
        "transformers.Gemma2RMSNorm",
        "transformers.Gemma3RMSNorm",
        "tl4.NormalizationBridge(LayerNorm)",
        "tl4.RMSNormalizationBridge(LlamaRMSNorm)",
        "tl4.RMSNormalizationBridge(GemmaRMSNorm)",
    }
    assert required <= names, required - names


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.name)
@given(data=st.data())
def test_apply_norm_equals_module_forward(kind: Any, data: st.DataObject) -> None:
    case: NormCase = data.draw(norm_modules([kind]), label="case")
    x = data.draw(residuals_for(case), label="x")
    with torch.no_grad():
        got = apply_norm_or_skip(x, case.module)
    assert got.dtype == x.dtype == case.dtype
    assert_norm_close(got, _forward(case.module, x), layernorm_conditioning(x, case))


def test_hooked_transformer_norm_components() -> None:
    reasons = unavailable_norm_kinds()
    if "tl.HookedTransformer components" in reasons:
        pytest.skip(reasons["tl.HookedTransformer components"])
    tl_kinds = [k for k in ALL_KINDS if k.name.startswith("tl.")]
    assert {k.name for k in tl_kinds} == {
        "tl.LayerNorm",
        "tl.LayerNormPre",
        "tl.RMSNorm",
        "tl.RMSNormPre",
    }
    # They then run through test_apply_norm_equals_module_forward like every other kind;
    # here: the LayerNorm component must centre (the original pipeline treated it as RMS).
    gpt2_ln = next(k for k in tl_kinds if k.name == "tl.LayerNorm").build(8, 1e-5, torch.float32, 0)
    assert norm_spec(gpt2_ln).kind == "layernorm"


# TransformerLens 4 removed HookedTransformer's norm components (the test above skips then);
# `nox -s compat` still runs TL 3.9. These stand-ins reproduce TL 3.9's classes (name, module,
# attributes w / b / eps and forward), so the TransformerLens branch of norm_spec is pinned
# whichever TransformerLens is installed.


def _tl3_class(name: str) -> type:
    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        if name.startswith("LayerNorm"):
            x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        if hasattr(self, "w"):
            x = x * self.w
        if hasattr(self, "b"):
            x = x + self.b
        return x

    def init(self: Any, d: int, eps: float) -> None:
        nn.Module.__init__(self)
        gen = torch.Generator().manual_seed(len(name))
        self.eps = eps
        if not name.endswith("Pre"):
            self.w = nn.Parameter(1 + torch.randn(d, generator=gen))
        if name == "LayerNorm":
            self.b = nn.Parameter(torch.randn(d, generator=gen))

    cls = type(name, (nn.Module,), {"__init__": init, "forward": forward})
    cls.__module__ = f"transformer_lens.components.{name.lower()}"
    return cls


@pytest.mark.parametrize(
    ("name", "kind", "has_w", "has_b"),
    [
        ("LayerNorm", "layernorm", True, True),
        ("LayerNormPre", "layernorm", False, False),
        ("RMSNorm", "rmsnorm", True, False),
        ("RMSNormPre", "rmsnorm", False, False),
    ],
)
def test_transformer_lens_3_norms(name: str, kind: str, has_w: bool, has_b: bool) -> None:
    module = _tl3_class(name)(8, 0.5)  # a large eps: dropping it would show
    spec = norm_spec(module)
    assert (spec.kind, spec.class_name, spec.eps) == (kind, name, 0.5)
    assert (spec.weight is module.w) if has_w else spec.weight is None
    assert (spec.bias is module.b) if has_b else spec.bias is None
    assert (spec.weight_offset, spec.cast_before_scale) == (0.0, False)
    x = 0.3 * torch.randn(5, 8, generator=torch.Generator().manual_seed(1)) + 0.2
    with torch.no_grad():
        torch.testing.assert_close(apply_norm_or_skip(x, module), module(x), rtol=1e-6, atol=1e-6)


def test_transformers_norm_specs_are_exact() -> None:
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    gemma = Gemma3RMSNorm(8, eps=1e-5)
    assert norm_spec(gemma) == NormSpec(
        "rmsnorm", gemma.weight, None, 1e-5, 1.0, False, "Gemma3RMSNorm"
    )
    llama = LlamaRMSNorm(8, eps=1e-6)
    assert norm_spec(llama) == NormSpec(
        "rmsnorm", llama.weight, None, 1e-6, 0.0, True, "LlamaRMSNorm"
    )
    layer = nn.LayerNorm(8, eps=1e-3)
    assert norm_spec(layer) == NormSpec(
        "layernorm", layer.weight, layer.bias, 1e-3, 0.0, False, "LayerNorm"
    )
    rms = nn.RMSNorm(8)
    assert norm_spec(rms) == NormSpec("rmsnorm", rms.weight, None, None, 0.0, False, "RMSNorm")


# ------------------------------------------------------- property: scale / shift invariance


def fp32_mean_square_is_normal(x: torch.Tensor) -> torch.Tensor:
    """Per row: is mean(x^2), computed in fp32 as the lens does, a normal fp32 number?

    The precondition of exact scale invariance. x / sqrt(mean(x^2)) is scale-invariant in
    exact arithmetic for any non-zero row, but in fp32 only where the mean square neither
    underflows (below finfo.tiny, ~1.2e-38: a row with RMS below ~1e-19) nor overflows.
    A non-zero row whose mean square underflows to 0 gives inf and 0/0 = NaN with eps = 0,
    in torch.nn.RMSNorm as in the lens (test_rms_scale_invariance_on_an_underflowing_row).
    """
    ms = x.float().pow(2).mean(-1)
    return (ms >= torch.finfo(torch.float32).tiny) & torch.isfinite(ms)


def check_rms_scale_invariance(case: NormCase, x: torch.Tensor, c: float) -> None:
    with torch.no_grad():
        base = apply_norm_or_skip(x, case.module).double()
        scaled = apply_norm_or_skip(x * c, case.module).double()
    # x / sqrt(ms + eps) vs x / sqrt(ms + eps / c^2): relative gap <= eps * max(1, c^-2) / (2 ms)
    eps = case.eps if case.eps is not None else torch.finfo(torch.float32).eps
    ms = x.double().pow(2).mean(-1, keepdim=True).clamp_min(1e-30)
    rel = eps * max(1.0, c**-2) / (2 * ms) + 1e-5
    assert ((scaled - base).abs() <= rel * base.abs() + 1e-6).all()
    # With eps = 0 the lens is exactly scale-invariant (up to fp32 rounding), on the rows
    # where that is computable at all: both x's and (x * c)'s fp32 mean square are normal.
    spec = dataclasses.replace(norm_spec(case.module), eps=0.0)
    rows = fp32_mean_square_is_normal(x) & fp32_mean_square_is_normal(x * c)
    a, b = apply_norm(x, spec)[rows], apply_norm(x * c, spec)[rows]
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@given(
    case=norm_modules(family="rmsnorm", dtype=torch.float32, max_eps=1e-5),
    data=st.data(),
    c=st.floats(1 / 16, 16),
)
def test_rms_lens_is_scale_invariant(case: NormCase, data: st.DataObject, c: float) -> None:
    # residuals() bounds the scale of its gaussian, not each row's RMS: a zero row with one
    # tiny special value in it is a legitimate input (the lens equals its module there:
    # test_apply_norm_equals_module_forward), so the eps = 0 check states its precondition.
    check_rms_scale_invariance(
        case, data.draw(residuals_for(case, min_scale=0.1, max_scale=10.0)), c
    )


#: The falsifying draw of a fresh clone's random gate (issue 22): the smallest fp32 subnormal
#: and two zeros, for torch.nn.RMSNorm(eps=None), c = 1.0. Its fp32 mean square is 0.
UNDERFLOWING_ROW = torch.tensor([1.4013e-45, 0.0, 0.0])


def test_rms_scale_invariance_on_an_underflowing_row() -> None:
    x = UNDERFLOWING_ROW
    assert float(x[0]) == 2.0**-149 and float(x.pow(2).mean()) == 0.0
    case = NormCase(
        "torch.nn.RMSNorm(eps=None)",
        "rmsnorm",
        norm_kind("torch.nn.RMSNorm(eps=None)").build(3, None, torch.float32, 0),
        3,
        torch.float32,
        None,
    )
    # The lens equals the module on it, bit for bit: eps = finfo(fp32).eps keeps it finite.
    got, want = apply_norm_or_skip(x, case.module), _forward(case.module, x)
    assert torch.equal(got, want)
    assert float(got[0]) == pytest.approx(
        2.0**-149 / math.sqrt(2.0**-23) * float(case.module.weight[0]), rel=1e-2
    )
    assert got[1:].tolist() == [0.0, 0.0]
    # An RMSNorm with eps = 0 gives inf and 0/0 = NaN, the lens the same, at the same places:
    # no lens bug, and no finite answer to be scale-invariant.
    zero_eps = nn.RMSNorm(3, eps=0.0)
    got, want = apply_norm_or_skip(x, zero_eps), _forward(zero_eps, x)
    assert (
        [str(v) for v in got.tolist()] == [str(v) for v in want.tolist()] == ["inf", "nan", "nan"]
    )
    # So the property's precondition leaves the row out (the old one, max |x| > 0, kept it)
    # and the check passes on the draw; a row of the same shape above underflow is checked.
    assert not bool(fp32_mean_square_is_normal(x))
    check_rms_scale_invariance(case, x, 1.0)
    assert bool(fp32_mean_square_is_normal(torch.tensor([1e-18, 0.0, 0.0])))
    assert not bool(fp32_mean_square_is_normal(torch.tensor([1e-20, 0.0, 0.0])))


@given(
    case=norm_modules(family="layernorm", dtype=torch.float32),
    data=st.data(),
    shift=st.floats(-50, 50),
)
def test_layernorm_lens_is_shift_invariant(
    case: NormCase, data: st.DataObject, shift: float
) -> None:
    x = data.draw(
        residuals_for(
            case, min_scale=0.1, max_scale=10.0, patterns=("normal", "offset", "outlier", "sparse")
        )
    )
    with torch.no_grad():
        base = apply_norm_or_skip(x, case.module).double()
        moved = apply_norm_or_skip(x + shift, case.module).double()
    # Centring removes the shift exactly; what remains is fp32 rounding of x + shift and of
    # the row means, relative to each row's spread.
    x64 = x.double()
    std = x64.std(-1, correction=0, keepdim=True)
    assume(bool((std > 1e-3).all()))
    offset = x64.mean(-1, keepdim=True).abs() + abs(shift)
    gamma = 1.0
    spec = norm_spec(case.module)
    if spec.weight is not None:
        gamma += float(spec.weight.abs().max())
    tol = 1e-6 * (1 + offset / std) * gamma
    assert ((moved - base).abs() <= tol).all()


# ----------------------------------------------------------------------- epsilon placement


def _manual_rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _manual_rms_eps_outside(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x / (torch.sqrt(x.pow(2).mean(-1, keepdim=True)) + eps) * w


RMS_EPS_CASES = ["torch", "llama"]


@pytest.mark.parametrize("impl", RMS_EPS_CASES)
def test_rms_epsilon_is_inside_the_sqrt(impl: str) -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    eps = 0.25  # large on purpose: inside vs outside the sqrt differs by a lot
    module: nn.Module = nn.RMSNorm(4, eps=eps) if impl == "torch" else LlamaRMSNorm(4, eps=eps)
    w = torch.tensor([1.0, 2.0, -0.5, 3.0])
    with torch.no_grad():
        module.weight.copy_(w)
    x = torch.tensor([[0.5, -0.25, 0.125, 0.75], [1.0, 1.0, -1.0, 0.0]])
    got = apply_norm_or_skip(x, module)
    right = _manual_rms(x, w, eps)
    wrong = _manual_rms_eps_outside(x, w, eps)
    torch.testing.assert_close(got, right, rtol=1e-6, atol=1e-7)
    assert (got - wrong).abs().max() > 0.05  # the deliberately wrong variant is far off
    # first row by hand: mean(x^2) + eps = 0.22265625 + 0.25 = 121/256, so the scale is 16/11
    assert got[0, 0].item() == pytest.approx(0.5 * 16 / 11, rel=1e-6)
    assert got[0, 3].item() == pytest.approx(0.75 * 16 / 11 * 3.0, rel=1e-6)


def test_layernorm_epsilon_is_inside_the_sqrt_and_gamma_beta_applied() -> None:
    eps = 0.5
    module = nn.LayerNorm(4, eps=eps)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        module.bias.copy_(torch.tensor([0.5, 0.0, -0.5, 1.0]))
    x = torch.tensor([[1.0, 2.0, 3.0, 6.0]])  # mean 3, var 3.5
    got = apply_norm_or_skip(x, module)
    centred = torch.tensor([[-2.0, -1.0, 0.0, 3.0]])
    right = centred / math.sqrt(3.5 + eps) * module.weight + module.bias
    wrong = centred / (math.sqrt(3.5) + eps) * module.weight + module.bias
    torch.testing.assert_close(got, right.detach(), rtol=1e-6, atol=1e-7)
    assert (got - wrong).abs().max() > 0.1
    assert got[0, 0].item() == pytest.approx(-2.0 / 2.0 * 1.0 + 0.5)


def test_gemma_scales_by_one_plus_weight() -> None:
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

    module = GemmaRMSNorm(2, eps=0.0)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([0.0, 1.0]))
    x = torch.tensor([3.0, 4.0])  # rms = sqrt(12.5)
    got = apply_norm_or_skip(x, module)
    r = math.sqrt(12.5)
    torch.testing.assert_close(got, torch.tensor([3.0 / r * 1.0, 4.0 / r * 2.0]))


def test_scaling_equivalence_unit_normalize_then_gamma() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 16, generator=gen)
    gamma = torch.randn(16, generator=gen)
    plain, scaled = nn.RMSNorm(16, eps=1e-6), nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        scaled.weight.copy_(gamma)
    unit = apply_norm_or_skip(x, plain)
    torch.testing.assert_close(unit.pow(2).mean(-1), torch.ones(3, 5), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(apply_norm_or_skip(x, scaled), unit * gamma, rtol=1e-6, atol=1e-6)


def test_rmsnorm_default_eps_follows_torch_for_low_precision() -> None:
    # torch.nn.RMSNorm(eps=None) adds the fp32 machine epsilon for bf16/fp16 inputs (the
    # statistics' dtype), not finfo(bf16).eps = 0.0078, which swamps small residuals.
    module = nn.RMSNorm(8, eps=None).to(torch.bfloat16)
    x = (torch.arange(8, dtype=torch.float32) - 3.5).mul(0.01).to(torch.bfloat16)
    with torch.no_grad():
        expected = module(x)
    got = apply_norm_or_skip(x, module)
    assert_norm_close(got, expected)
    assert got.float().pow(2).mean().item() == pytest.approx(1.0, rel=0.02)


def test_layernorm_spec_without_eps_adds_nothing() -> None:
    x = torch.tensor([[1e-3, -1e-3, 3e-3, -3e-3]])  # variance 5e-6: any eps would show
    centred = x - x.mean(-1, keepdim=True)
    want = centred / centred.pow(2).mean(-1, keepdim=True).sqrt()
    got = apply_norm(x, NormSpec("layernorm", None, None, None))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)


def test_rmsnorm_default_eps_in_float32_is_float32s() -> None:
    module = nn.RMSNorm(4, eps=None)
    x = 1e-4 * torch.tensor([[1.0, -2.0, 3.0, 0.5]])  # mean(x^2) ~ 3.6e-8, eps 1.2e-7
    with torch.no_grad():
        want = module(x)
        got = apply_norm_or_skip(x, module)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    assert float(got.pow(2).mean()) < 0.5  # the eps dominates: far from unit RMS


def test_rmsnorm_default_eps_in_float64_is_float64s() -> None:
    module = nn.RMSNorm(4, eps=None, dtype=torch.float64)
    x = 1e-5 * torch.tensor([[1.0, -2.0, 3.0, 0.5]], dtype=torch.float64)  # mean(x^2) ~ 4e-10
    with torch.no_grad():
        want = module(x)
    got = apply_norm_or_skip(x, module)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)


def test_llama_norm_is_bit_exact_in_bfloat16_and_keeps_the_input_dtype() -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    gen = torch.Generator().manual_seed(5)
    module = LlamaRMSNorm(64, eps=1e-6).to(torch.bfloat16)
    with torch.no_grad():
        module.weight.copy_(1 + 0.7 * torch.randn(64, generator=gen))
        x = (3 * torch.randn(16, 64, generator=gen)).to(torch.bfloat16)
        want = module(x)
    got = apply_norm_or_skip(x, module)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, want)  # the cast to bf16 happens before the scale, as Llama does
    fp32_weight = LlamaRMSNorm(64, eps=1e-6)  # fp32 weight, bf16 activations: dtype kept
    assert apply_norm_or_skip(x, fp32_weight).dtype == torch.bfloat16


# ------------------------------------------------------------------ None / unsupported


def test_none_returns_the_input_object() -> None:
    x = torch.randn(2, 3)
    assert apply_norm_or_skip(x, None) is x


class MyFancyNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True)


def _unknown_norm_message(qualname: str) -> str:
    return (
        f"norm module {qualname} is not a norm class lenscheck knows; expected "
        "torch.nn.LayerNorm/RMSNorm, a transformers *RMSNorm (Llama-style or Gemma (1+w)), or "
        "a TransformerLens LayerNorm/RMSNorm. Refusing to guess its formula: add it to "
        "lenscheck.norms with a test that compares against the module's forward."
    )


@pytest.mark.parametrize(
    ("module", "qualname"),
    [
        (MyFancyNorm(), f"{__name__}.MyFancyNorm"),
        (nn.BatchNorm1d(4), "torch.nn.modules.batchnorm.BatchNorm1d"),
        (nn.GroupNorm(2, 4), "torch.nn.modules.normalization.GroupNorm"),
        (nn.Identity(), "torch.nn.modules.linear.Identity"),
    ],
)
def test_unsupported_norm_raises_naming_the_class(module: nn.Module, qualname: str) -> None:
    with pytest.raises(UnsupportedNormError) as info:
        apply_norm_or_skip(torch.randn(2, 4), module)
    assert str(info.value) == _unknown_norm_message(qualname)
    assert isinstance(info.value, TypeError)


def test_unverified_transformers_norm_is_refused() -> None:
    from transformers.models.t5.modeling_t5 import T5LayerNorm

    with pytest.raises(UnsupportedNormError, match="T5LayerNorm"):
        apply_norm_or_skip(torch.randn(2, 4), T5LayerNorm(4))


def test_non_norm_transformer_lens_module_is_refused() -> None:
    hook_points = pytest.importorskip("transformer_lens.hook_points")  # the 'tl' extra
    HookPoint = hook_points.HookPoint

    with pytest.raises(UnsupportedNormError, match="HookPoint"):
        apply_norm_or_skip(torch.randn(2, 4), HookPoint())


def test_multi_dim_layernorm_is_refused() -> None:
    # The lens normalizes over the last dimension only; a 2-D normalized_shape would be
    # silently recomputed wrongly.
    with pytest.raises(UnsupportedNormError) as info:
        apply_norm_or_skip(torch.randn(2, 3, 4), nn.LayerNorm((3, 4)))
    assert str(info.value) == (
        "norm module torch.nn.modules.normalization.LayerNorm normalizes over "
        "normalized_shape=(3, 4); the lens supports the last dimension only"
    )


# ------------------------------------------------------------------------- unwrap_norm


class FakeNormBridge:
    """Named like TransformerLens 4's bridges: ``original_component`` is the wrapped module."""

    def __init__(self, inner: Any = None) -> None:
        if inner is not None:
            self.original_component = inner


def _bridges(depth: int, core: Any) -> Any:
    module = core
    for _ in range(depth):
        module = FakeNormBridge(module)
    return module


def test_unwrap_norm_peels_up_to_eight_bridges() -> None:
    core = nn.LayerNorm(4)
    assert unwrap_norm(core) is core
    assert unwrap_norm(_bridges(1, core)) is core
    assert unwrap_norm(_bridges(8, core)) is core
    ninth = _bridges(9, core)
    eighth_layer_down = ninth
    for _ in range(8):
        eighth_layer_down = eighth_layer_down.original_component
    assert isinstance(eighth_layer_down, FakeNormBridge)
    assert unwrap_norm(ninth) is eighth_layer_down  # the guard stops after eight
    empty = FakeNormBridge()  # a bridge with nothing inside is returned as it is
    assert unwrap_norm(empty) is empty
    assert unwrap_norm(FakeNormBridge(empty)) is empty
    loop = FakeNormBridge()
    loop.original_component = loop  # a cycle ends after eight steps instead of hanging
    assert unwrap_norm(loop) is loop


# ------------------------------------------------------------- architecture / norm choice


def _block(order: tuple[str, ...]) -> nn.Module:
    block = nn.Module()
    for name in order:
        block.add_module(name, nn.LayerNorm(4) if name.startswith("ln") else nn.Linear(4, 4))
    return block


def _model(order: tuple[str, ...], n_layers: int = 3) -> nn.Module:
    model = nn.Module()
    model.blocks = nn.ModuleList([_block(order) for _ in range(n_layers)])
    model.ln_final = nn.LayerNorm(4)
    return model


PRE = ("ln1", "attn", "ln2", "mlp")
POST = ("attn", "ln1", "mlp", "ln2")
POST_LN1_FIRST = ("ln1", "attn", "mlp", "ln2")


@pytest.mark.parametrize(
    ("order", "expected"), [(PRE, "pre_norm"), (POST, "post_norm"), (POST_LN1_FIRST, "post_norm")]
)
def test_detect_model_architecture_from_child_order(order: tuple[str, ...], expected: str) -> None:
    assert detect_model_architecture(_model(order)) == expected


def test_detect_model_architecture_fallbacks() -> None:
    no_blocks = nn.Module()
    assert detect_model_architecture(no_blocks) == "pre_norm"
    declared = _model(PRE)
    declared.architecture = "post_norm"  # a backend's explicit declaration wins...
    assert detect_model_architecture(declared) == "post_norm"
    declared = _model(POST_LN1_FIRST)
    declared.architecture = "pre_norm"  # ...either way
    assert detect_model_architecture(declared) == "pre_norm"
    no_mlp = _model(("ln1", "attn", "ln2"))
    assert detect_model_architecture(no_mlp) == "pre_norm"


def test_block_zero_decides_the_architecture() -> None:
    mixed = _model(PRE)
    mixed.blocks[0] = _block(POST_LN1_FIRST)
    assert detect_model_architecture(mixed) == "post_norm"
    mixed = _model(POST_LN1_FIRST)
    mixed.blocks[0] = _block(PRE)
    assert detect_model_architecture(mixed) == "pre_norm"


def test_norm_choice_pre_norm() -> None:
    m = _model(PRE)
    b = m.blocks
    assert get_correct_norm_module(m, 0) is b[1].ln1
    assert get_correct_norm_module(m, 1, probe_after_block=True) is b[2].ln1
    assert get_correct_norm_module(m, 2) is m.ln_final  # last block -> final norm
    assert get_correct_norm_module(m, 3) is m.ln_final  # past the last block
    for i in range(3):
        assert get_correct_norm_module(m, i, probe_after_block=False) is b[i].ln1
    assert lens_norm_modules(m) == [b[0].ln1, b[1].ln1, b[2].ln1, m.ln_final]


def test_norm_choice_post_norm() -> None:
    m = _model(POST)
    b = m.blocks
    for i in range(3):
        assert get_correct_norm_module(m, i) is b[i].ln2
        assert get_correct_norm_module(m, i, probe_after_block=False) is b[i].ln1
    assert get_correct_norm_module(m, 2) is b[2].ln2  # not ln_final
    assert get_correct_norm_module(m, 3) is m.ln_final
    assert lens_norm_modules(m) == [b[0].ln1, b[0].ln2, b[1].ln2, b[2].ln2]


def test_norm_choice_missing_norms_return_none() -> None:
    m = _model(("attn", "mlp"), n_layers=2)
    del m.ln_final
    assert get_correct_norm_module(m, 0) is None
    assert get_correct_norm_module(m, 1) is None
    assert get_correct_norm_module(m, 0, probe_after_block=False) is None
    # Objects without the attributes at all (not even None): absent norms, not errors.
    ln = object()
    pre = SimpleNamespace(architecture="pre_norm", blocks=[SimpleNamespace(ln1=ln)])
    assert get_correct_norm_module(pre, 1) is None  # no ln_final attribute
    assert get_correct_norm_module(pre, 0) is None  # the last block: ln_final again
    post = SimpleNamespace(architecture="post_norm", blocks=[SimpleNamespace(ln1=ln)])
    assert get_correct_norm_module(post, 0) is None  # no ln2 attribute
    assert get_correct_norm_module(post, 0, probe_after_block=False) is ln


# --------------------------------------------------- a real booted TransformerLens 4 bridge


def _save_tiny_gpt2(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(30)} | {"<unk>": 30, "<bos>": 31}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<bos>", eos_token="<bos>"
    )
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=32,
        n_positions=16,
        n_embd=16,
        n_layer=2,
        n_head=2,
        layer_norm_epsilon=1e-3,
        bos_token_id=31,
        eos_token_id=31,
    )
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # non-trivial gamma/beta so a dropped bias or centring shows
        for name, p in model.named_parameters():
            if ".ln_" in name:
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
    model.save_pretrained(path)
    fast.save_pretrained(path)


@pytest.fixture(scope="module")
def gpt2_bridge(tmp_path_factory: pytest.TempPathFactory) -> Any:
    bridge_mod = pytest.importorskip("transformer_lens.model_bridge")
    path = tmp_path_factory.mktemp("tiny-gpt2")
    _save_tiny_gpt2(path)
    return bridge_mod.TransformerBridge.boot_transformers(
        str(path), device="cpu", dtype=torch.float32
    )


def _bridge_norms(bridge: Any) -> list[nn.Module]:
    return [n for b in bridge.blocks for n in (b.ln1, b.ln2)] + [bridge.ln_final]


def test_booted_bridge_structure(gpt2_bridge: Any) -> None:
    norms = _bridge_norms(gpt2_bridge)
    assert [type(n).__name__ for n in norms] == ["NormalizationBridge"] * 5
    assert all(norm_spec(n).kind == "layernorm" and norm_spec(n).bias is not None for n in norms)
    assert all(norm_spec(n).eps == pytest.approx(1e-3) for n in norms)
    assert detect_model_architecture(gpt2_bridge) == "pre_norm"
    b = gpt2_bridge.blocks
    assert lens_norm_modules(gpt2_bridge) == [b[0].ln1, b[1].ln1, gpt2_bridge.ln_final]


@given(idx=st.integers(0, 4), data=st.data())
def test_booted_bridge_norms_match_forward(gpt2_bridge: Any, idx: int, data: st.DataObject) -> None:
    norm = _bridge_norms(gpt2_bridge)[idx]
    x = data.draw(residuals(d_model=16, dtype=torch.float32))
    with torch.no_grad():
        got = apply_norm_or_skip(x, norm)
    assert_norm_close(got, _forward(norm, x))


def _named(name: str) -> Any:
    return type(name, (), {})()


def _stack(architecture: str, final: bool, n: int = 2) -> Any:
    from lenscheck.backends.base import BlockNorms, LayerStack

    blocks = [BlockNorms(_named(f"ln1_{i}"), _named(f"ln2_{i}")) for i in range(n)]
    return LayerStack(architecture, blocks, _named("final") if final else None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("architecture", "final", "expected"),
    [
        ("pre_norm", True, "final"),
        ("post_norm", True, "final"),
        ("post_norm", False, "ln2_2"),  # OPT-350m: the last block's ln2 feeds the unembedding
        ("pre_norm", False, None),  # a pre-norm model without a final norm has none
    ],
)
def test_final_norm_module_is_the_norm_in_front_of_the_unembedding(
    architecture: str, final: bool, expected: str | None
) -> None:
    from lenscheck.norms import final_norm_module

    found = final_norm_module(_stack(architecture, final, n=3))
    assert (None if found is None else type(found).__name__) == expected
    assert final_norm_module(_stack("post_norm", False, n=0)) is None  # no block to fall back on


def test_final_norm_module_of_a_model_object_without_those_attributes() -> None:
    """The original pipeline's API takes any model object: a missing ``ln_final`` or
    ``ln2`` is no norm, not an AttributeError."""
    from types import SimpleNamespace

    from lenscheck.norms import final_norm_module

    ln2 = _named("ln2_last")
    post = SimpleNamespace(architecture="post_norm", blocks=[SimpleNamespace(), SimpleNamespace()])
    assert final_norm_module(post) is None
    post.blocks[-1].ln2 = ln2
    assert final_norm_module(post) is ln2
    assert final_norm_module(SimpleNamespace(architecture="pre_norm", blocks=[])) is None


@pytest.mark.parametrize("architecture", ["pre_norm", "post_norm"])
def test_decode_norm_modules_per_point(architecture: str) -> None:
    from lenscheck.norms import decode_norm_modules

    stack = _stack(architecture, final=True)
    names = {
        point: [None if m is None else type(m).__name__ for m in decode_norm_modules(stack, point)]
        for point in ("next-ln1", "final", "raw")
    }
    assert names["final"] == ["final"] * 3
    assert names["raw"] == [None] * 3
    expected_next = (
        ["ln1_0", "ln1_1", "final"] if architecture == "pre_norm" else ["ln1_0", "ln2_0", "ln2_1"]
    )
    assert names["next-ln1"] == expected_next
    with pytest.raises(
        ValueError, match=r"^decode norm must be one of next-ln1, final, raw, got 'tuned'$"
    ):
        decode_norm_modules(stack, "tuned")
