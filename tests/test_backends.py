"""transformers vs TransformerLens (TransformerBridge): the same lens, number for number.

Every run is memoized in ``_lens_fixtures`` (one per model and backend per process), so
the embedded model's transformers run is shared with test_lens_pipeline and test_plot.
"""

from __future__ import annotations

from typing import Any

import pytest
from _lens_fixtures import embedded_run, synthetic_run
from hypothesis import given
from hypothesis import strategies as st

from lenscheck.models import SYNTHETIC_ALIASES, TL_BRIDGE_UNSUPPORTED

BACKENDS = ("transformers", "transformer-lens")
#: Entropies of the same distribution through two libraries; the measured maximum on the
#: embedded model is ~1e-5 bits (docs/design.md section 7 reports 1.2e-5 against the original).
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


#: What "the numbers a prompt has alone" means for a padded batch: the same top-1 and
#: entropies within this many bits, at every lens layer and position and for the model's
#: own logits. A masked, padded forward rounds differently from an unpadded one: measured
#: on one torch thread, at most 7.9e-6 bits (synthetic-gemma3); two threads reach 1.2e-5
#: (synthetic-gpt2), so the test runs on one, as the CI gate's workers do.
BATCH_ENTROPY_TOL_BITS = 1e-5


def _entropy_and_top1(logits: Any) -> tuple[Any, Any]:
    from lenscheck.numerics import entropy_bits

    return entropy_bits(logits), logits.argmax(-1)


@pytest.mark.usefixtures("torch_single_thread")
@pytest.mark.parametrize(("alias", "backend"), CASES)
def test_run_batch_gives_each_prompt_what_it_has_alone(alias: str, backend: str) -> None:
    """One right-padded forward over prompts of different lengths, the longest not last:
    a wrong padding side, a missing mask or a row mix-up changes some prompt's numbers."""
    import torch

    from lenscheck.backends.base import batch_token_budget, plan_batches
    from lenscheck.lens import lens_logits
    from lenscheck.prompts import TEST_PROMPTS

    be = _run(alias, backend).backend
    # BOS first, as the tolerance below was measured (the padding, not the ids, is tested).
    prompts = (TEST_PROMPTS[10], TEST_PROMPTS[0], TEST_PROMPTS[7])
    batch = [be.codec.encode(p, "always") for p in prompts]
    lengths = [len(ids) for ids in batch]
    assert len(set(lengths)) == 3 and max(lengths) != lengths[-1]
    assert len(plan_batches(lengths, batch_token_budget(be.facts.d_vocab))) == 1  # one pass
    captures = be.run_batch(batch)
    assert len(captures) == len(batch)
    n_lens_layers = be.facts.num_layers + 1
    for ids, got in zip(batch, captures, strict=True):
        alone = be.run(ids)
        assert len(got.residuals) == len(alone.residuals) == n_lens_layers
        assert [tuple(r.shape) for r in got.residuals] == [tuple(r.shape) for r in alone.residuals]
        assert got.logits.shape == alone.logits.shape == (len(ids), be.facts.d_vocab)
        assert got.logits.dtype == torch.float32
        with torch.no_grad():
            lens = (lens_logits(be, got.residuals), lens_logits(be, alone.residuals))
        pairs = [("model logits", got.logits, alone.logits), ("lens", *lens)]
        for what, batched, single in pairs:
            (h_b, top_b), (h_s, top_s) = _entropy_and_top1(batched), _entropy_and_top1(single)
            mismatch = (top_b != top_s).nonzero().tolist()
            assert mismatch == [], f"{what}: top-1 differs at {mismatch[:10]}"
            diff = float((h_b - h_s).abs().max())
            assert diff < BATCH_ENTROPY_TOL_BITS, f"{what}: entropy differs by {diff:.3g} bits"


# ----------------------------------------------------- batch planning and right padding


@given(
    lengths=st.lists(st.integers(1, 64), max_size=40),
    budget=st.integers(1, 256),
)
def test_plan_batches_properties(lengths: list[int], budget: int) -> None:
    from lenscheck.backends.base import plan_batches

    batches = plan_batches(lengths, budget)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # each once
    assert all(batches), "an empty batch"
    for batch in batches:
        widths = [lengths[i] for i in batch]
        assert widths == sorted(widths, reverse=True)  # non-increasing: pads to the first
        if len(batch) > 1:  # over the budget only when one prompt alone is
            assert len(batch) * widths[0] <= budget
    # Greedy: a batch closes only when one more prompt would take it over the budget.
    for done in batches[:-1]:
        assert (len(done) + 1) * lengths[done[0]] > budget


def test_plan_batches_examples() -> None:
    from lenscheck.backends.base import batch_token_budget, plan_batches

    assert plan_batches([], 10) == []
    assert plan_batches([3, 5, 4], 100) == [[1, 2, 0]]  # longest first, ties by index
    assert plan_batches([4, 4, 4], 8) == [[0, 1], [2]]  # 2 * 4 == 8 fits, 3 * 4 does not
    assert plan_batches([20, 2, 2], 8) == [[0], [1, 2]]  # too long alone: runs alone
    assert batch_token_budget(49152) == (1 << 26) // 49152 == 1365
    assert batch_token_budget(1) == 2048  # capped
    assert batch_token_budget(10**9) == 1  # never zero


@given(batch=st.lists(st.lists(st.integers(1, 50_000), min_size=1, max_size=12), min_size=1))
def test_right_pad_properties(batch: list[list[int]]) -> None:
    import torch

    from lenscheck.backends.base import right_pad

    tokens, mask = right_pad(batch, "cpu")
    width = max(len(ids) for ids in batch)
    assert tokens.shape == (len(batch), width) and tokens.dtype == torch.long
    for row, ids in enumerate(batch):
        assert tokens[row, : len(ids)].tolist() == ids  # each prompt at its own positions
        assert tokens[row, len(ids) :].tolist() == [0] * (width - len(ids))
    if all(len(ids) == width for ids in batch):
        assert mask is None  # the unmasked path a lone prompt takes
    else:
        assert mask is not None and mask.shape == tokens.shape
        assert mask.tolist() == [[int(j < len(ids)) for j in range(width)] for ids in batch]


def test_transformers_model_is_the_model_under_the_transformers_backend_only() -> None:
    """Independent checks (tuned-lens, the checkpoint's own tokenizer) read the model
    itself; under another backend they are refused, naming the backend to use."""
    from transformers import PreTrainedModel

    from lenscheck.backends.hf import transformers_model

    backend = synthetic_run("synthetic-llama").backend
    model = transformers_model(backend)
    assert isinstance(model, PreTrainedModel)
    assert model is backend.model  # type: ignore[attr-defined]
    tl = synthetic_run("synthetic-llama", "transformer-lens").backend
    with pytest.raises(TypeError, match=r"--backend transformers.*got TransformerLensBackend"):
        transformers_model(tl)
