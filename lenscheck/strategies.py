"""Hypothesis strategies for testing logit lenses: residuals, logits, norm modules, CSV tokens.

Import them in your own property tests (needs ``lenscheck[test]``, i.e. hypothesis)::

    from hypothesis import given, strategies as st
    from lenscheck.norms import apply_norm_or_skip
    from lenscheck.strategies import norm_modules, residuals_for

    @given(case=norm_modules(), data=st.data())
    def test_my_norm(case, data):
        x = data.draw(residuals_for(case))
        expected = case.module(x)
        assert apply_norm_or_skip(x, case.module).shape == expected.shape

Tensors are built from a drawn seed plus drawn shape, dtype, scale and pattern (plus a few
hypothesis-drawn values written over random positions), so generation stays cheap for
64-wide residuals while hypothesis can still shrink the shape, scale and pattern of a
failing example. Every norm module is returned inside a :class:`NormCase` that records
its kind, width, dtype and epsilon, so a falsifying example reads well.
"""

from __future__ import annotations

import functools
import importlib
import math
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from hypothesis import strategies as st
from torch import nn

from lenscheck.schema import FLAG_COLUMNS, TOP_K_VERBOSE, CsvRow, rest_mass

__all__ = [
    "CSV_SPECIAL_TOKENS",
    "FLOAT_DTYPES",
    "NormCase",
    "NormKind",
    "available_norm_kinds",
    "csv_rows",
    "csv_token_strings",
    "finite_logits",
    "float_dtypes",
    "norm_kind",
    "norm_modules",
    "residual_shapes",
    "residuals",
    "residuals_for",
    "unavailable_norm_kinds",
]

FLOAT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float16)

NormFamily = Literal["layernorm", "rmsnorm"]
# build(d_model, eps, dtype, seed) -> module with random parameters, cast to dtype, in eval mode
NormBuilder = Callable[[int, float | None, torch.dtype, int], nn.Module]


# ----------------------------------------------------------------- dtypes, shapes, tensors


def float_dtypes() -> st.SearchStrategy[torch.dtype]:
    """fp32, bf16 or fp16 (shrinks towards fp32)."""
    return st.sampled_from(FLOAT_DTYPES)


@functools.lru_cache(maxsize=64)
def residual_shapes(
    *,
    min_batch_dims: int = 0,
    max_batch_dims: int = 2,
    max_batch_size: int = 4,
    min_d_model: int = 2,
    max_d_model: int = 64,
    d_model: int | None = None,
) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes ``(*batch, d_model)`` with 0-2 batch dims of size 1..``max_batch_size``."""
    batch = st.lists(
        st.integers(1, max_batch_size), min_size=min_batch_dims, max_size=max_batch_dims
    )
    width = st.just(d_model) if d_model is not None else st.integers(min_d_model, max_d_model)
    return st.tuples(batch, width).map(lambda bw: (*bw[0], bw[1]))


@functools.lru_cache(maxsize=64)
def _log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats spread evenly in log space over [lo, hi] (lo > 0)."""
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: 10.0**e)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


_PATTERNS = ("normal", "offset", "outlier", "constant_row", "zero_row", "sparse")


@st.composite
def residuals(
    draw: st.DrawFn,
    *,
    shape: tuple[int, ...] | None = None,
    d_model: int | None = None,
    dtype: torch.dtype | None = None,
    min_scale: float = 1e-2,
    max_scale: float = 1e2,
    patterns: Sequence[str] = _PATTERNS,
    max_batch_dims: int = 2,
) -> torch.Tensor:
    """Residual-stream tensors ``(*batch, d_model)``: random shape, dtype and scale.

    Patterns: ``normal``; ``offset`` (a per-row mean offset up to 3 std); ``outlier`` (one
    coordinate per row 50x larger, as in real residual streams); ``constant_row`` and
    ``zero_row`` (a row with no spread: LayerNorm's degenerate case); ``sparse`` (most
    coordinates zero). Values stay far below fp16's overflow (max ~3e4).

    ``min_scale``/``max_scale`` bound the gaussian's scale, not each row's RMS: a
    ``zero_row`` or ``sparse`` row plus a few exact values from hypothesis (zeros, bounds,
    tiny numbers, in float64 before the cast, so a fp32 subnormal such as 1.4e-45 can
    arrive) can have any RMS down to 0, and a row whose fp32 mean square underflows. A norm
    must still equal its module there; a property that needs a computable x / rms(x) must
    say so itself (tests/test_norms.py: ``fp32_mean_square_is_normal``).
    """
    if shape is None:
        shape = draw(residual_shapes(d_model=d_model, max_batch_dims=max_batch_dims))
    if dtype is None:
        dtype = draw(float_dtypes())
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(_log_uniform(min_scale, max_scale))
    pattern = draw(st.sampled_from(tuple(patterns)))
    gen = _generator(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    rows = x.reshape(-1, shape[-1])
    if pattern == "offset":
        rows += torch.randn(rows.shape[0], 1, generator=gen, dtype=torch.float64) * 3 * scale
    elif pattern == "outlier":
        idx = torch.randint(0, shape[-1], (rows.shape[0],), generator=gen)
        rows[torch.arange(rows.shape[0]), idx] *= 50.0
    elif pattern == "constant_row":
        rows[0] = float(rows[0, 0])
    elif pattern == "zero_row":
        rows[0] = 0.0
    elif pattern == "sparse":
        rows *= (torch.rand(rows.shape, generator=gen, dtype=torch.float64) < 0.2).double()
    # A few exact values from hypothesis (zeros, bounds, tiny numbers) at random positions.
    flat = rows.reshape(-1)
    for pos, value in draw(_specials(max_scale)):
        flat[pos % flat.numel()] = value
    return x.to(dtype)


@functools.lru_cache(maxsize=64)
def _specials(max_abs: float) -> st.SearchStrategy[list[tuple[int, float]]]:
    """Up to three (position, exact value) pairs; positions are reduced modulo numel."""
    value = st.floats(-max_abs, max_abs, allow_subnormal=False)
    return st.lists(st.tuples(st.integers(0, 2**16), value), max_size=3)


def residuals_for(case: NormCase, **kwargs: Any) -> st.SearchStrategy[torch.Tensor]:
    """Residuals that fit ``case``'s module (its ``d_model`` and dtype)."""
    return residuals(d_model=case.d_model, dtype=case.dtype, **kwargs)


@st.composite
def finite_logits(
    draw: st.DrawFn,
    *,
    min_vocab: int = 2,
    max_vocab: int = 512,
    batch_shape: tuple[int, ...] = (),
    allow_neg_inf: bool = True,
    max_abs: float = 1e4,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Logits ``(*batch_shape, V)``: finite values in [-max_abs, max_abs], optionally with
    ``-inf`` masks, and at least one finite entry in every row (no NaN, no +inf).

    Patterns: gaussian at a log-uniform scale, uniform (all equal), one peaked id, integer
    ties, extremes (+-max_abs), and for small V values drawn one by one by hypothesis.
    """
    vocab = draw(st.integers(min_vocab, max_vocab))
    shape = (*batch_shape, vocab)
    n_rows = math.prod(batch_shape)
    patterns = ["normal", "uniform", "peaked", "ties", "extreme"]
    if vocab * n_rows <= 32:
        patterns.append("explicit")
    pattern = draw(st.sampled_from(patterns))
    gen = _generator(draw(st.integers(0, 2**32 - 1)))
    scale = draw(_log_uniform(1e-3, max_abs / 10))
    if pattern == "normal":
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    elif pattern == "uniform":
        x = torch.full(shape, draw(st.floats(-max_abs, max_abs)), dtype=torch.float64)
    elif pattern == "peaked":
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        peak = torch.randint(0, vocab, (n_rows,), generator=gen)
        x.reshape(-1, vocab)[torch.arange(n_rows), peak] += scale * 10
    elif pattern == "ties":
        x = torch.randint(-3, 4, shape, generator=gen).double() * min(scale, max_abs / 3)
    elif pattern == "extreme":
        x = (torch.randint(0, 2, shape, generator=gen).double() * 2 - 1) * max_abs
    else:
        values = draw(
            st.lists(st.floats(-max_abs, max_abs), min_size=vocab * n_rows, max_size=vocab * n_rows)
        )
        x = torch.tensor(values, dtype=torch.float64).reshape(shape)
    x = x.clamp(-max_abs, max_abs)
    if allow_neg_inf and draw(st.booleans()):
        frac = draw(st.floats(0.0, 0.95))
        mask = torch.rand(shape, generator=gen, dtype=torch.float64) < frac
        rows_mask = mask.reshape(-1, vocab)
        keep = torch.randint(0, vocab, (n_rows,), generator=gen)
        rows_mask[torch.arange(n_rows), keep] = False  # at least one finite entry per row
        x = x.masked_fill(mask, float("-inf"))
    return x.to(dtype)


# ------------------------------------------------------------------------- norm modules


@dataclass(frozen=True)
class NormKind:
    """One norm class (and construction variant) lenscheck must reproduce exactly."""

    name: str
    family: NormFamily
    build: NormBuilder
    eps_is_none: bool = False  # torch.nn.RMSNorm(eps=None): dtype-dependent default

    def __repr__(self) -> str:
        return f"NormKind({self.name!r})"


@dataclass(frozen=True)
class NormCase:
    """A drawn norm module with the facts needed to feed and judge it."""

    kind: str
    family: NormFamily
    module: nn.Module
    d_model: int
    dtype: torch.dtype
    eps: float | None

    def __repr__(self) -> str:
        return (
            f"NormCase(kind={self.kind!r}, d_model={self.d_model}, dtype={self.dtype}, "
            f"eps={self.eps!r})"
        )


def _randomize(module: nn.Module, seed: int, *, offset_weight: bool) -> None:
    """Random gamma (around 1, or around 0 for (1 + w) norms) and beta, in fp32."""
    gen = _generator(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen) * 0.5
            base = 0.0 if name.endswith("bias") or offset_weight else 1.0
            param.copy_(noise + base)


def _finish(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    module = module.to(dtype).eval()
    module.requires_grad_(False)
    return module


def _torch_layernorm(bias: bool = True, affine: bool = True) -> NormBuilder:
    def build(d: int, eps: float | None, dtype: torch.dtype, seed: int) -> nn.Module:
        module = nn.LayerNorm(
            d, eps=1e-5 if eps is None else eps, elementwise_affine=affine, bias=bias
        )
        _randomize(module, seed, offset_weight=False)
        return _finish(module, dtype)

    return build


def _torch_rmsnorm(affine: bool = True) -> NormBuilder:
    def build(d: int, eps: float | None, dtype: torch.dtype, seed: int) -> nn.Module:
        module = nn.RMSNorm(d, eps=eps, elementwise_affine=affine)
        _randomize(module, seed, offset_weight=False)
        return _finish(module, dtype)

    return build


def _transformers_rmsnorm(cls: type[nn.Module], offset_weight: bool) -> NormBuilder:
    def build(d: int, eps: float | None, dtype: torch.dtype, seed: int) -> nn.Module:
        module = cls(d, eps=1e-6 if eps is None else eps)
        _randomize(module, seed, offset_weight=offset_weight)
        return _finish(module, dtype)

    return build


def _module_eps(module: nn.Module) -> float:
    eps = getattr(module, "eps", None)
    if eps is None:
        eps = getattr(module, "variance_epsilon")  # noqa: B009 - nn.Module typing
    return float(eps)


def _bridge(
    bridge_cls: type[nn.Module], inner: NormBuilder, *, rms: bool, offset_weight: bool
) -> NormBuilder:
    """Wrap ``inner`` the way TransformerBridge.boot_transformers does: the bridge's config
    carries the model's epsilon and norm flavour, the original module sits inside."""

    def build(d: int, eps: float | None, dtype: torch.dtype, seed: int) -> nn.Module:
        module = inner(d, eps, dtype, seed)
        config = types.SimpleNamespace(
            eps=_module_eps(module), uses_rms_norm=rms, rmsnorm_uses_offset=offset_weight
        )
        bridge = bridge_cls("norm", config)
        bridge.set_original_component(module)  # type: ignore[operator]
        return bridge.eval()

    return build


def _transformers_kinds() -> list[NormKind]:
    kinds: list[NormKind] = []
    wanted = [
        ("llama", "LlamaRMSNorm", False),
        ("mistral", "MistralRMSNorm", False),
        ("qwen2", "Qwen2RMSNorm", False),
        ("gemma", "GemmaRMSNorm", True),
        ("gemma2", "Gemma2RMSNorm", True),
        ("gemma3", "Gemma3RMSNorm", True),
    ]
    for family, cls_name, offset in wanted:
        try:
            mod = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
            cls = getattr(mod, cls_name)
        except (ImportError, AttributeError):
            continue
        kinds.append(
            NormKind(f"transformers.{cls_name}", "rmsnorm", _transformers_rmsnorm(cls, offset))
        )
    return kinds


def _bridge_kinds() -> list[NormKind]:
    # transformer-lens is an optional extra, and its versions differ in what they ship: the
    # norm classes of each family are imported where they are tried.
    try:
        from transformer_lens.model_bridge.generalized_components.normalization import (
            NormalizationBridge,
        )
        from transformer_lens.model_bridge.generalized_components.rms_normalization import (
            RMSNormalizationBridge,
        )
        from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
        from transformers.models.llama.modeling_llama import LlamaRMSNorm
    except ImportError:
        return []
    llama = _transformers_rmsnorm(LlamaRMSNorm, False)
    gemma = _transformers_rmsnorm(GemmaRMSNorm, True)
    return [
        # GPT-2 style: the bridge recomputes LayerNorm in Python from its config's eps.
        NormKind(
            "tl4.NormalizationBridge(LayerNorm)",
            "layernorm",
            _bridge(NormalizationBridge, _torch_layernorm(), rms=False, offset_weight=False),
        ),
        NormKind(
            "tl4.NormalizationBridge(LayerNorm(bias=False))",
            "layernorm",
            _bridge(
                NormalizationBridge, _torch_layernorm(bias=False), rms=False, offset_weight=False
            ),
        ),
        NormKind(
            "tl4.NormalizationBridge(LlamaRMSNorm)",
            "rmsnorm",
            _bridge(NormalizationBridge, llama, rms=True, offset_weight=False),
        ),
        # Llama / Gemma style: the bridge calls the wrapped transformers module.
        NormKind(
            "tl4.RMSNormalizationBridge(LlamaRMSNorm)",
            "rmsnorm",
            _bridge(RMSNormalizationBridge, llama, rms=True, offset_weight=False),
        ),
        NormKind(
            "tl4.RMSNormalizationBridge(GemmaRMSNorm)",
            "rmsnorm",
            _bridge(RMSNormalizationBridge, gemma, rms=True, offset_weight=True),
        ),
    ]


def _hooked_transformer_kinds() -> tuple[list[NormKind], str | None]:
    """TransformerLens HookedTransformer components (TL < 4); TL 4 removed them."""
    try:
        from transformer_lens import components
        from transformer_lens.HookedTransformerConfig import HookedTransformerConfig
    except ImportError as exc:
        return [], (
            f"TransformerLens HookedTransformer norm components are not importable "
            f"({exc}); TransformerLens 4 removed HookedTransformer"
        )

    def tl_builder(cls_name: str) -> NormBuilder:
        def build(d: int, eps: float | None, dtype: torch.dtype, seed: int) -> nn.Module:
            cfg = HookedTransformerConfig(
                d_model=d,
                n_layers=1,
                n_ctx=8,
                d_head=1,
                n_heads=1,
                d_vocab=4,
                act_fn="relu",
                eps=1e-5 if eps is None else eps,
                dtype=torch.float32,
                device="cpu",
            )
            module = getattr(components, cls_name)(cfg)
            _randomize(module, seed, offset_weight=False)
            return _finish(module, dtype)

        return build

    kinds = [
        NormKind("tl.LayerNorm", "layernorm", tl_builder("LayerNorm")),
        NormKind("tl.LayerNormPre", "layernorm", tl_builder("LayerNormPre")),
        NormKind("tl.RMSNorm", "rmsnorm", tl_builder("RMSNorm")),
        NormKind("tl.RMSNormPre", "rmsnorm", tl_builder("RMSNormPre")),
    ]
    return kinds, None


@functools.lru_cache(maxsize=1)
def _registry() -> tuple[tuple[NormKind, ...], tuple[tuple[str, str], ...]]:
    kinds = [
        NormKind("torch.nn.LayerNorm", "layernorm", _torch_layernorm()),
        NormKind("torch.nn.LayerNorm(bias=False)", "layernorm", _torch_layernorm(bias=False)),
        NormKind(
            "torch.nn.LayerNorm(elementwise_affine=False)",
            "layernorm",
            _torch_layernorm(affine=False),
        ),
        NormKind("torch.nn.RMSNorm", "rmsnorm", _torch_rmsnorm()),
        NormKind("torch.nn.RMSNorm(eps=None)", "rmsnorm", _torch_rmsnorm(), eps_is_none=True),
        NormKind(
            "torch.nn.RMSNorm(elementwise_affine=False)", "rmsnorm", _torch_rmsnorm(affine=False)
        ),
    ]
    missing: list[tuple[str, str]] = []
    try:
        kinds += _transformers_kinds()
    except ImportError as exc:  # pragma: no cover - transformers is a dependency
        missing.append(("transformers", str(exc)))
    bridges = _bridge_kinds()
    if not bridges:
        missing.append(("tl4 bridges", "transformer_lens.model_bridge is not importable"))
    kinds += bridges
    hooked, reason = _hooked_transformer_kinds()
    kinds += hooked
    if reason is not None:
        missing.append(("tl.HookedTransformer components", reason))
    return tuple(kinds), tuple(missing)


def available_norm_kinds(family: NormFamily | None = None) -> list[NormKind]:
    """Every norm kind importable here (optionally only one family)."""
    kinds, _ = _registry()
    return [k for k in kinds if family is None or k.family == family]


def unavailable_norm_kinds() -> dict[str, str]:
    """Kinds that are not importable in this environment, with the reason."""
    return dict(_registry()[1])


def norm_kind(name: str) -> NormKind:
    """The kind called ``name`` (KeyError naming the available ones otherwise)."""
    for kind in available_norm_kinds():
        if kind.name == name:
            return kind
    names = ", ".join(k.name for k in available_norm_kinds())
    raise KeyError(f"no norm kind {name!r} here; available: {names}")


@st.composite
def norm_modules(
    draw: st.DrawFn,
    kinds: Sequence[NormKind | str] | None = None,
    *,
    d_model: int | None = None,
    dtype: torch.dtype | None = None,
    min_eps: float = 1e-8,
    max_eps: float = 1e-2,
    family: NormFamily | None = None,
) -> NormCase:
    """A norm module of a random supported kind with random eps, gamma and beta.

    ``d_model`` 2..64 and the dtype (fp32/bf16/fp16) are drawn unless fixed. Epsilon is
    log-uniform in [min_eps, max_eps] (or common model values), None for the
    ``torch.nn.RMSNorm(eps=None)`` kind.
    """
    pool = [
        norm_kind(k) if isinstance(k, str) else k
        for k in (kinds if kinds is not None else available_norm_kinds(family))
    ]
    if not pool:
        raise ValueError("norm_modules: no norm kind to draw from")
    kind = draw(st.sampled_from(pool))
    d = d_model if d_model is not None else draw(st.integers(2, 64))
    dt = dtype if dtype is not None else draw(float_dtypes())
    eps: float | None = None
    if not kind.eps_is_none:
        common = [e for e in (1e-5, 1e-6) if min_eps <= e <= max_eps]
        eps = draw(
            st.sampled_from(common) | _log_uniform(min_eps, max_eps)
            if common
            else _log_uniform(min_eps, max_eps)
        )
    seed = draw(st.integers(0, 2**32 - 1))
    return NormCase(kind.name, kind.family, kind.build(d, eps, dt, seed), d, dt, eps)


# ------------------------------------------------------------------------------ CSV data

CSV_SPECIAL_TOKENS: tuple[str, ...] = (
    '"',
    '""',
    ",",
    '","',
    "\\",
    "\\\\",
    '\\"',
    "\\n",
    "\n",
    "\r",
    "\r\n",
    "\t",
    " ",
    "",
    "<0x0A>",
    "<0x0D>",
    "<0x00>",
    "\ufffd",
    "Ċ",
    "Ġ",
    "▁",
    "é",
    "中文",
    "🙂",
    "'",
    "⟨NEXT⟩",
    "<|begin_of_text|>",
    "a,b",
    '"quoted"',
    " Berlin",
    "\x00",
    "\u2028",
    "\x1b",
    "=1+1",
)


def csv_token_strings(max_size: int = 16) -> st.SearchStrategy[str]:
    """Decoded token texts as they reach the CSV: quotes, commas, backslashes, newlines,
    ``\\r``, non-ASCII, byte-fallback pieces (``<0x0A>``), a lone ``\ufffd``, and any
    other text (lone surrogates excluded: a decoded token is always valid Unicode)."""
    chars = st.characters(codec="utf-8")  # no lone surrogates
    pieces = st.sampled_from(CSV_SPECIAL_TOKENS) | st.text(chars, max_size=3)
    return st.one_of(
        st.sampled_from(CSV_SPECIAL_TOKENS),
        st.text(chars, max_size=max_size),
        st.lists(pieces, max_size=5).map("".join),
    )


@st.composite
def csv_rows(
    draw: st.DrawFn,
    kind: Literal["records", "pure"] = "records",
    top_k_verbose: int = TOP_K_VERBOSE,
) -> CsvRow:
    """A valid row of a lens CSV: arbitrary tokens, probabilities in [0, 1], entropy >= 0,
    0..``top_k_verbose`` (token, prob) pairs and the matching ``rest_mass``."""
    probs = st.floats(0.0, 1.0)
    topk = tuple(draw(st.lists(st.tuples(csv_token_strings(), probs), max_size=top_k_verbose)))
    flags: tuple[bool, ...] = ()
    if kind == "pure":
        flags = tuple(
            draw(st.lists(st.booleans(), min_size=len(FLAG_COLUMNS), max_size=len(FLAG_COLUMNS)))
        )
    return CsvRow(
        layer=draw(st.integers(0, 200)),
        pos=draw(st.integers(0, 4096)),
        token=draw(csv_token_strings()),
        entropy=draw(st.floats(0.0, 1e3)),
        topk=topk,
        rest_mass=rest_mass(p for _, p in topk),
        flags=flags,
    )
