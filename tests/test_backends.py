"""transformers vs TransformerLens (TransformerBridge): the same lens, number for number.

Every run is memoized in ``_lens_fixtures`` (one per model and backend per process), so
the embedded model's transformers run is shared with test_lens_pipeline and test_plot.
"""

from __future__ import annotations

from typing import Any

import pytest
from _lens_fixtures import embedded_run, synthetic_run

from lenscheck.models import SYNTHETIC_ALIASES, TL_BRIDGE_UNSUPPORTED

BACKENDS = ("transformers", "transformer-lens")
#: Entropies of the same distribution through two libraries; the measured maximum on the
#: embedded model is ~1e-5 bits (DESIGN.md section 7 reports 1.2e-5 against the original).
ENTROPY_TOL_BITS = 1e-4
KL_TOL_BITS = 1e-6

CASES = [
    pytest.param(alias, backend, id=f"{alias}-{backend}")
    for alias in SYNTHETIC_ALIASES
    for backend in BACKENDS
    if not (backend == "transformer-lens" and alias in TL_BRIDGE_UNSUPPORTED)
]


def _run(alias: str, backend: str) -> Any:
    return embedded_run(backend) if alias == "embedded" else synthetic_run(alias, backend)


def _assert_same_lens(a: Any, b: Any, *, entropy_tol: float) -> float:
    """Same tokens, same top-1 at every (layer, position), entropies within ``entropy_tol``."""
    import torch

    ra, rb = a.result, b.result
    assert ra.input_ids == rb.input_ids
    assert ra.top1_ids.shape == rb.top1_ids.shape
    mismatches = (ra.top1_ids != rb.top1_ids).nonzero().tolist()
    assert mismatches == [], f"top-1 differs at (layer, pos) {mismatches[:10]}"
    diff = float((ra.entropies - rb.entropies).abs().max())
    assert diff < entropy_tol, f"max |entropy difference| {diff:.3g} bits"
    assert torch.isfinite(ra.entropies).all()
    for key in ("L_copy", "L_copy_H", "L_semantic", "delta_layers"):
        assert ra.diagnostics[key] == rb.diagnostics[key], key
    assert [r["topk"][0][0] for r in ra.pure_records] == [r["topk"][0][0] for r in rb.pure_records]
    return diff


@pytest.mark.slow
def test_embedded_backends_agree() -> None:
    hf, tl = embedded_run("transformers"), embedded_run("transformer-lens")
    assert hf.result.diagnostics["backend"] == "transformers"
    assert tl.result.diagnostics["backend"] == "transformer-lens"
    assert "transformer-lens" in tl.result.diagnostics["versions"]
    assert hf.result.top1_ids.shape == (31, 17)
    diff = _assert_same_lens(hf, tl, entropy_tol=ENTROPY_TOL_BITS)
    print(f"embedded: max |entropy(transformers) - entropy(transformer-lens)| = {diff:.3g} bits")
    assert hf.result.diagnostics["L_semantic"] == 30
    # The two libraries' own final distributions agree too (model logits, not the lens).
    hf_final = hf.result.json_data["final_prediction"]["topk"]
    tl_final = tl.result.json_data["final_prediction"]["topk"]
    assert [t for t, _ in hf_final] == [t for t, _ in tl_final]
    assert max(abs(p - q) for (_, p), (_, q) in zip(hf_final, tl_final)) < 1e-5
    # And the probe prompts, which go through each library's own forward.
    hf_tests = hf.result.json_data["test_prompts"]
    tl_tests = tl.result.json_data["test_prompts"]
    assert [t["topk"][0][0] for t in hf_tests] == [t["topk"][0][0] for t in tl_tests]


@pytest.mark.parametrize("alias", [a for a in SYNTHETIC_ALIASES if a not in TL_BRIDGE_UNSUPPORTED])
def test_synthetic_backends_agree(alias: str) -> None:
    diff = _assert_same_lens(
        synthetic_run(alias, "transformers"),
        synthetic_run(alias, "transformer-lens"),
        entropy_tol=ENTROPY_TOL_BITS,
    )
    print(f"{alias}: max |entropy difference| = {diff:.3g} bits")


@pytest.mark.parametrize(
    ("alias", "backend"),
    [
        *CASES,
        *(
            pytest.param("embedded", b, id=f"embedded-{b}", marks=pytest.mark.slow)
            for b in BACKENDS
        ),
    ],
)
def test_last_layer_reproduces_model_logits(alias: str, backend: str) -> None:
    run = _run(alias, backend)
    diag = run.result.diagnostics
    assert diag["backend"] == backend
    assert diag["compute_dtype"] == "torch.float32"
    llc = diag["last_layer_consistency"]
    print(f"{alias} [{backend}]: kl_bits_max = {llc['kl_bits_max']:.3g}")
    assert llc["kl_bits_max"] < KL_TOL_BITS
    assert llc["kl_bits_last_pos"] <= llc["kl_bits_max"]
    assert llc["top1_agree"] is True
    # The lens' own last-layer top-1 per position is the model's argmax per position.
    model_top1 = run.result.extras["model_logits"].argmax(-1)
    assert run.result.top1_ids[-1].tolist() == model_top1.tolist()


def test_tl_unsupported_list_is_the_post_norm_family() -> None:
    assert set(TL_BRIDGE_UNSUPPORTED) <= set(SYNTHETIC_ALIASES)
    assert "synthetic-opt-postnorm" in TL_BRIDGE_UNSUPPORTED
    # Every other family is covered by both backends above.
    assert len(CASES) == 2 * len(SYNTHETIC_ALIASES) - len(TL_BRIDGE_UNSUPPORTED)


def test_post_norm_family_runs_through_transformers() -> None:
    run = synthetic_run("synthetic-opt-postnorm", "transformers")
    diag = run.result.diagnostics
    assert run.result.json_data["model_stats"]["architecture"] == "post_norm"
    assert diag["norm_alignment_fix"] == "using_ln2_layernorm_for_post_block"
    assert diag["final_ln_type"] is None  # post-norm OPT has no final norm
    assert diag["layer0_position_info"] == "additive_pos_embed_included"


def test_unknown_backend_is_refused() -> None:
    from lenscheck.cli import build_parser
    from lenscheck.config import LensConfig

    with pytest.raises(ValueError, match="backend must be one of"):
        LensConfig(backend="jax")  # type: ignore[arg-type]
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["run", "--backend", "jax"])
    assert exc.value.code == 2


@pytest.mark.parametrize(("alias", "backend"), CASES)
def test_batched_probe_logits_match_one_prompt_at_a_time(alias: str, backend: str) -> None:
    """The probes' one right-padded forward gives each prompt's own last-position logits.

    Prompts of different lengths, in an order where the longest is not last, so a wrong
    padding side, a missing mask or a row/column mix-up in the gather shows.
    """
    import torch

    from lenscheck.prompts import TEST_PROMPTS

    be = _run(alias, backend).backend
    batch = [be.encode(p) for p in (TEST_PROMPTS[10], TEST_PROMPTS[0], TEST_PROMPTS[7])]
    assert len({len(ids) for ids in batch}) == 3
    got = be.next_token_logits_batch(batch)
    assert got.shape == (3, be.facts.d_vocab) and got.dtype == torch.float32
    for row, ids in zip(got, batch, strict=True):
        alone = be.run(ids).logits[-1]
        assert int(row.argmax()) == int(alone.argmax())
        assert float((row - alone).abs().max()) < 1e-4
