"""The Lens protocol and its registry (lenscheck.lenses): spec parsing, the logit lens, the
tuned lens' formula on the model-free fake backend, and a third kind added in one class
and one registry entry. tests/test_lenses_tuned.py checks the tuned lens against tuned-lens
itself (committed fixtures) and the runner's per-lens files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from _lens_fixtures import make_fake_backend
from hypothesis import given, settings
from hypothesis import strategies as st

from lenscheck.config import LensConfig
from lenscheck.lenses import (
    LENS_KINDS,
    Lens,
    LensSpec,
    LensSpecError,
    LogitLens,
    TunedLens,
    parse_lens_spec,
    parse_lens_specs,
)
from lenscheck.suites import PromptSuite

POINTS = ("next-ln1", "final", "raw")
PROMPT = "Give the city name only, plain text. The capital of Germany is called simply"
SUITE = PromptSuite.one_off(PROMPT, "Berlin", (" Berlin is the capital of",))


def write_checkpoint(
    folder: Path,
    backend: Any,
    *,
    seed: int | None = 0,
    bias: bool = True,
    scale: float = 0.3,
    **config: Any,
) -> Path:
    """A tuned-lens folder as TunedLens.save writes it, for ``backend``: random translators
    (``seed``) or zeros (``seed=None``)."""
    import torch

    d, n = backend.facts.d_model, backend.facts.num_layers
    gen = torch.Generator().manual_seed(seed or 0)
    state: dict[str, torch.Tensor] = {}
    for i in range(n):
        rand = seed is not None
        state[f"{i}.weight"] = (
            torch.randn(d, d, generator=gen) * scale if rand else torch.zeros(d, d)
        )
        if bias:
            state[f"{i}.bias"] = torch.randn(d, generator=gen) * scale if rand else torch.zeros(d)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "params.pt")
    cfg = {
        "base_model_name_or_path": backend.model_id,
        "d_model": d,
        "num_hidden_layers": n,
        "bias": bias,
        "base_model_revision": None,
        "unembed_hash": None,
        "lens_type": "linear_tuned_lens",
        **config,
    }
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("text", "kind", "arg"),
    [
        ("logit", "logit", None),
        (" logit ", "logit", None),
        ("tuned=/lenses/gpt2", "tuned", "/lenses/gpt2"),
        ("tuned = lenses/a b", "tuned", "lenses/a b"),
        ("tuned=a=b", "tuned", "a=b"),  # only the first '=' splits
    ],
)
def test_a_spec_is_a_kind_and_its_argument(text: str, kind: str, arg: str | None) -> None:
    spec = parse_lens_spec(text)
    assert (spec.kind, spec.arg, spec.text) == (kind, arg, text)
    assert spec.cls is LENS_KINDS[kind] and spec.name == kind
    assert spec.suffix == ("" if kind == "logit" else "-tuned")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prism", r"^unknown lens 'prism' in 'prism'; expected one of logit, tuned=PATH$"),
        ("", r"^unknown lens '' in ''"),
        ("tuned", r"^lens 'tuned' needs an argument: tuned=PATH, got None$"),
        ("tuned=", r"^lens 'tuned' needs an argument: tuned=PATH, got ''$"),
        ("tuned=  ", r"needs an argument: tuned=PATH, got ''$"),
        ("logit=final", r"^lens 'logit' takes no argument, got logit=final$"),
    ],
)
def test_a_bad_spec_is_refused_with_the_usage(text: str, message: str) -> None:
    with pytest.raises(LensSpecError, match=message):
        parse_lens_spec(text)


def test_a_spec_must_be_text() -> None:
    with pytest.raises(LensSpecError, match="a lens spec is a string like 'logit' or"):
        parse_lens_spec(3)  # type: ignore[arg-type]


@settings(deadline=None)
@given(path=st.text(min_size=1).map(str.strip).filter(bool))
def test_any_path_survives_the_spec(path: str) -> None:
    """Whatever a folder is called (spaces, '=', unicode), tuned=PATH hands it on as is."""
    spec = parse_lens_spec(f"tuned={path}")
    assert (spec.kind, spec.arg) == ("tuned", path)


def test_a_run_reads_one_lens_of_each_kind() -> None:
    specs = parse_lens_specs(["logit", "tuned=a"])
    assert [s.kind for s in specs] == ["logit", "tuned"]
    with pytest.raises(LensSpecError, match=r"^two tuned lenses \('tuned=a' and 'tuned=b'\)"):
        parse_lens_specs(["tuned=a", "logit", "tuned=b"])
    with pytest.raises(LensSpecError, match=r"^two logit lenses"):
        parse_lens_specs(["logit", " logit"])
    with pytest.raises(LensSpecError, match=r"^no lens given"):
        parse_lens_specs([])


def test_lens_config_checks_its_lenses_through_the_registry() -> None:
    assert LensConfig().lenses == ("logit",)
    assert LensConfig(lenses=("tuned=/nowhere", "logit")).lenses == ("tuned=/nowhere", "logit")
    with pytest.raises(LensSpecError, match="unknown lens 'prism'"):
        LensConfig(lenses=("prism",))
    with pytest.raises(ValueError, match=r"^lenses must be a tuple of lens specs"):
        LensConfig(lenses="logit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^lenses must be a tuple of lens specs"):
        LensConfig(lenses=["logit"])  # type: ignore[arg-type]
    with pytest.raises(LensSpecError, match=r"^two logit lenses"):
        LensConfig().evolve(lenses=("logit", "logit"))


def test_the_registry_holds_each_kind_under_its_name() -> None:
    assert list(LENS_KINDS) == ["logit", "tuned"]
    assert all(cls.kind == kind and issubclass(cls, Lens) for kind, cls in LENS_KINDS.items())
    assert (LogitLens.argument, TunedLens.argument) == (None, "PATH")


# --------------------------------------------------------------------------- the logit lens


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("arch", ["pre_norm", "post_norm"])
def test_the_logit_lens_decodes_as_the_pipeline_does(point: str, arch: str) -> None:
    import torch

    from lenscheck.lens import lens_logits, normalized_residuals

    fb = make_fake_backend(architecture=arch, norm="rmsnorm")
    residuals, _ = fb.forward(fb.encode(PROMPT))
    lens = LogitLens(fb, point)
    assert torch.equal(lens.prepare(residuals), normalized_residuals(fb, residuals, point))
    whole = lens_logits(fb, residuals, point)
    assert torch.equal(lens.decode_all(residuals), whole)
    for layer, resid in enumerate(residuals):
        assert torch.equal(lens.decode(layer, resid), whole[layer])
    assert lens.facts() == {"kind": "logit", "decode_norm": point}
    assert lens.where == f"decoding point {point}" and lens.name == "logit"
    assert lens.last_layer_is_the_model_head == (point != "raw")


def test_a_logit_lens_point_must_be_a_decoding_point() -> None:
    with pytest.raises(ValueError, match=r"^decode norm must be one of next-ln1, final, raw"):
        LogitLens(make_fake_backend(), "tuned")


# --------------------------------------------------------------------------- the tuned lens


def _by_hand(fb: Any, folder: Path, residuals: list[Any]) -> Any:
    """tuned-lens' definition written out: unembed(final_norm(h + W h + b)) below the last
    layer, unembed(final_norm(h)) at it, each norm called as the model's own module."""
    import torch

    from lenscheck.norms import final_norm_module

    state = torch.load(folder / "params.pt", weights_only=True)
    norm = final_norm_module(fb.stack)
    rows = []
    for layer, h in enumerate(residuals):
        if layer < len(residuals) - 1:
            w, b = state[f"{layer}.weight"], state.get(f"{layer}.bias")
            h = h + torch.nn.functional.linear(h, w, b)
        rows.append(fb.unembed(norm(h) if norm is not None else h))
    return torch.stack(rows)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    ("arch", "norm"), [("pre_norm", "layernorm"), ("pre_norm", "rmsnorm"), ("post_norm", "rmsnorm")]
)
def test_the_tuned_lens_is_tuned_lens_definition(
    tmp_path: Path, arch: str, norm: str, bias: bool
) -> None:
    import torch

    fb = make_fake_backend(architecture=arch, norm=norm)
    folder = write_checkpoint(tmp_path / "lens", fb, bias=bias)
    lens = TunedLens.bind(fb, LensConfig(), str(folder), None)
    residuals, _ = fb.forward(fb.encode(PROMPT))
    expected = _by_hand(fb, folder, residuals)
    got = lens.decode_all(residuals)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for layer, resid in enumerate(residuals):
        torch.testing.assert_close(lens.decode(layer, resid), got[layer], rtol=1e-6, atol=1e-6)
    # The last layer has no translator: the model's own head.
    assert torch.equal(got[-1], LogitLens(fb, "final").decode(len(residuals) - 1, residuals[-1]))
    assert not torch.allclose(got[0], LogitLens(fb, "final").decode(0, residuals[0]))
    facts = lens.facts()
    assert facts["kind"] == "tuned" and facts["config"]["bias"] is bias
    assert len(facts["translators_sha256"]) == 64 and lens.where == f"tuned lens {folder}"
    with pytest.raises(IndexError, match="layer 4 out of range for 4 lens layers"):
        lens.decode(4, residuals[0])


def test_the_tuned_lens_batches_prompts_as_each_alone(tmp_path: Path) -> None:
    import torch

    fb = make_fake_backend()
    lens = TunedLens.bind(fb, LensConfig(), str(write_checkpoint(tmp_path / "l", fb)), None)
    prompts = [fb.forward(fb.encode(t))[0] for t in (PROMPT, " Berlin is the capital of")]
    both = lens.prepare_batch(prompts)
    alone = torch.cat([lens.prepare(p) for p in prompts], dim=1)
    torch.testing.assert_close(both, alone, rtol=1e-6, atol=1e-6)


def test_the_tuned_lens_translates_in_fp32_and_keeps_the_residual_dtype(tmp_path: Path) -> None:
    import torch

    from lenscheck.norms import apply_norm_or_skip, final_norm_module

    fb = make_fake_backend(norm="rmsnorm")
    folder = write_checkpoint(tmp_path / "l", fb)
    lens = TunedLens.bind(fb, LensConfig(), str(folder), None)
    state = torch.load(folder / "params.pt", weights_only=True)
    h = fb.forward(fb.encode(PROMPT))[0][1].bfloat16()
    got = lens.prepare_layer(1, h)
    h32 = h.float()
    translated = (h32 + h32 @ state["1.weight"].T + state["1.bias"]).bfloat16()
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, apply_norm_or_skip(translated, final_norm_module(fb.stack)))


@pytest.mark.parametrize("arch", ["pre_norm", "post_norm"])
def test_zero_translators_are_the_final_logit_lens_bit_for_bit(tmp_path: Path, arch: str) -> None:
    """tuned-lens' own init (zero translators) is the final-norm logit lens: every record,
    pure row, entropy and last-layer logit of the run is the same bits; only the JSON's lens
    facts differ."""
    import torch

    from lenscheck.lens import run_lenses

    fb = make_fake_backend(architecture=arch)
    folder = write_checkpoint(tmp_path / "zero", fb, seed=None)
    cfg = LensConfig(decode_norm="final", lenses=("logit", f"tuned={folder}"))
    by_lens = run_lenses(fb, SUITE, cfg)
    logit, tuned = by_lens["logit"]["custom"], by_lens["tuned"]["custom"]
    assert (logit.lens, tuned.lens) == ("logit", "tuned")
    assert tuned.records == logit.records and tuned.pure_records == logit.pure_records
    assert torch.equal(tuned.entropies, logit.entropies)
    assert torch.equal(tuned.top1_ids, logit.top1_ids)
    assert torch.equal(tuned.extras["lens_logits_last"], logit.extras["lens_logits_last"])
    facts = tuned.json_data["diagnostics"].pop("lens")
    assert facts == tuned.lens_facts and facts["kind"] == "tuned"
    assert "lens" not in logit.json_data["diagnostics"] and logit.lens_facts["kind"] == "logit"
    assert tuned.json_data == logit.json_data


def test_a_tuned_lens_run_is_its_own_records(tmp_path: Path) -> None:
    """Random translators change every layer but the last; the probes, the final prediction
    and the decoding-point ablation (the model and the logit lens) are the same in both."""
    from lenscheck.lens import run_lenses, run_suite

    fb = make_fake_backend()
    folder = write_checkpoint(tmp_path / "rand", fb, scale=1.0)
    cfg = LensConfig(decode_norm="final", lenses=("logit", f"tuned={folder}"))
    by_lens = run_lenses(fb, SUITE, cfg)
    logit, tuned = by_lens["logit"]["custom"], by_lens["tuned"]["custom"]
    width = len(logit.input_ids)
    changed = {r["layer"] for r, s in zip(logit.records, tuned.records) if r != s}
    assert changed == set(range(fb.facts.num_layers))  # every translated layer, not the last
    assert logit.records[-width:] == tuned.records[-width:]
    for key in ("test_prompts", "temperature_exploration", "final_prediction"):
        assert tuned.json_data[key] == logit.json_data[key]
    diag, ldiag = tuned.json_data["diagnostics"], logit.json_data["diagnostics"]
    assert diag["decoding_ablation"] == ldiag["decoding_ablation"]
    assert diag["last_layer_consistency"] == ldiag["last_layer_consistency"]
    # run_suite: the first lens of the configuration, or the one asked for.
    assert run_suite(fb, SUITE, cfg)["custom"].records == logit.records
    alone = run_suite(fb, SUITE, cfg, lens=f"tuned={folder}")["custom"]
    assert alone.lens == "tuned" and alone.records == tuned.records


def test_the_ablation_does_not_need_the_logit_lens(tmp_path: Path) -> None:
    """A run of the tuned lens alone still reports the logit lens at every decoding point."""
    from lenscheck.lens import run_lenses

    fb = make_fake_backend()
    folder = write_checkpoint(tmp_path / "rand", fb)
    both = run_lenses(fb, SUITE, LensConfig(lenses=("logit", f"tuned={folder}")))
    alone = run_lenses(fb, SUITE, LensConfig(lenses=(f"tuned={folder}",)))
    assert list(alone) == ["tuned"]
    a = alone["tuned"]["custom"].json_data["diagnostics"]["decoding_ablation"]
    b = both["tuned"]["custom"].json_data["diagnostics"]["decoding_ablation"]
    assert a.keys() == b.keys() and a["chosen"] == "final"
    for point in POINTS:
        assert a[point]["top1"] == b[point]["top1"]
        assert a[point]["entropy"] == pytest.approx(b[point]["entropy"], abs=1e-5)


def test_lenses_are_bound_once_each_and_at_the_run_s_decoding_point(tmp_path: Path) -> None:
    from lenscheck.lens import run_lenses
    from lenscheck.lens.pipeline import bind_lens_items
    from lenscheck.lenses import open_lenses

    fb = make_fake_backend()
    cfg = LensConfig()
    with pytest.raises(LensSpecError, match=r"a logit lens at raw in a run whose decode_norm"):
        run_lenses(fb, SUITE, cfg, [LogitLens(fb, "raw")])
    with pytest.raises(LensSpecError, match=r"one lens of each kind, at least one; got \[\]"):
        bind_lens_items([], fb, cfg)
    with pytest.raises(LensSpecError, match=r"got \['logit', 'logit'\]"):
        bind_lens_items([LogitLens(fb), "logit"], fb, cfg)
    folder = write_checkpoint(tmp_path / "l", fb)
    (opened,) = open_lenses([f"tuned={folder}"])
    bound = bind_lens_items(["logit", opened], fb, cfg)
    assert [type(b) for b in bound] == [LogitLens, TunedLens]


# --------------------------------------------------------------------------- a third kind


class _ScaledLens(Lens):
    """A toy kind: the final-norm logit lens' logits times a factor (a temperature)."""

    kind: ClassVar[str] = "scaled"
    argument: ClassVar[str | None] = "FACTOR"

    def __init__(self, backend: Any, factor: float) -> None:
        super().__init__(backend)
        self.factor = factor
        self._final = LogitLens(backend, "final")

    @classmethod
    def bind(cls, backend: Any, cfg: LensConfig, arg: str | None, opened: Any) -> Lens:
        return cls(backend, float(str(arg)))

    def facts(self) -> dict[str, Any]:
        return {"kind": self.kind, "factor": self.factor}

    def prepare_layer(self, layer: int, residual: Any) -> Any:
        return self._final.prepare_layer(layer, residual)

    def readout(self, rows: Any, *, fp32: bool = False, out: Any = None) -> Any:
        return self.backend.unembed(rows, fp32=fp32, out=out).mul_(self.factor)


def test_a_third_kind_is_one_class_and_one_registry_entry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What the development docs promise: a kind (here a toy one) needs its class and its
    entry in LENS_KINDS, and every part of a run takes it: config, pipeline, files."""
    import torch

    from lenscheck.artifacts import output_paths
    from lenscheck.lens import run_lenses
    from lenscheck.runner import write_outputs

    monkeypatch.setitem(LENS_KINDS, "scaled", _ScaledLens)
    fb = make_fake_backend()
    cfg = LensConfig(decode_norm="final", lenses=("logit", "scaled=2"), heatmap=False)
    spec = parse_lens_spec("scaled=2")
    assert spec == LensSpec("scaled", "2", "scaled=2") and spec.suffix == "-scaled"
    by_lens = run_lenses(fb, SUITE, cfg)
    logit, scaled = by_lens["logit"]["custom"], by_lens["scaled"]["custom"]
    assert torch.equal(scaled.top1_ids, logit.top1_ids)  # a positive factor keeps the order
    assert bool((scaled.entropies < logit.entropies).all())  # and sharpens every cell
    assert scaled.json_data["diagnostics"]["lens"] == {"kind": "scaled", "factor": 2.0}
    paths = output_paths(tmp_path, "fake", spec.suffix)
    write_outputs(scaled, paths, cfg, title="fake (scaled lens)")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "output-fake-milestones-scaled.csv",
        "output-fake-pure-next-token-rawlens-scaled.csv",
        "output-fake-pure-next-token-scaled.csv",
        "output-fake-records-scaled.csv",
        "output-fake-scaled.json",
    ]
