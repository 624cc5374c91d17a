"""The lens pipeline end to end on the embedded model, and unit tests on a model-free backend.

Part 1 (``slow``): one embedded SmolLM2 run (shared through ``_lens_fixtures.embedded_run``)
checked against the behaviour spec (docs/design.md section 3) and the published files' shape.
Part 2: :class:`_lens_fixtures.FakeBackend`, a tiny torch model with real norm modules,
pins which norm the lens applies where, the last-layer identity, the unembedding (softcap,
fp32 promotion), the error paths word for word, and every record, probe, p(answer) and
diagnostic (the decoding-point ablation included) against values computed here
independently, for one prompt and for a suite.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
from _lens_fixtures import (
    EMBEDDED_FILE_NAME,
    ORIGINAL_DIAGNOSTIC_KEYS,
    ORIGINAL_TOP_LEVEL_KEYS,
    PUBLISHED_DIR,
    embedded_run,
    make_fake_backend,
    write_run,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from lenscheck.strategies import finite_logits

#: One torch thread for this module (see _lens_fixtures.single_thread).
pytestmark = pytest.mark.usefixtures("torch_single_thread")

PROMPT_TOKENS = [
    "<|im_start|>",
    "Give",
    " the",
    " city",
    " name",
    " only",
    ",",
    " plain",
    " text",
    ".",
    " The",
    " capital",
    " of",
    " Germany",
    " is",
    " called",
    " simply",
]
N_LAYERS = 30
KEYWORDS = ("germany", "berlin", "capital", "answer", "word", "simply")


# ============================================================== part 1: the embedded model


@pytest.fixture(scope="module")
def emb() -> Any:
    """The embedded model's run through transformers (memoized for the whole process)."""
    return embedded_run("transformers")


@pytest.fixture(scope="module")
def emb_files(emb: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The run's JSON and CSVs, written by the runner's atomic writer."""
    return write_run(emb, tmp_path_factory.mktemp("embedded-files"))


def _expected_verbose(tokens: list[str]) -> set[int]:
    """The spec's verbose positions, computed independently of lenscheck.prompts."""
    out = {len(tokens) - 1}
    for pos, tok in enumerate(tokens):
        text = tok.lower().strip(".,!?;:")
        if any(word in text for word in KEYWORDS):
            out.add(pos)
    return out


@pytest.mark.slow
def test_embedded_tokenization_has_bos_and_17_tokens(emb: Any) -> None:
    res = emb.result
    assert len(res.input_ids) == 17
    assert res.input_ids[0] == emb.backend.bos_token_id == 1
    assert [r["token"] for r in res.records[:17]] == PROMPT_TOKENS
    tok = res.diagnostics["tokenization"]
    assert tok["prepend_bos"] is True and tok["n_tokens"] == 17
    assert tok["input_ids"] == res.input_ids


@pytest.mark.slow
def test_embedded_berlin_first_top1_at_the_last_layer(emb: Any) -> None:
    pure = emb.result.pure_records
    assert [r["layer"] for r in pure] == list(range(N_LAYERS + 1))
    top1 = [r["topk"][0][0] for r in pure]
    assert top1[N_LAYERS] == " Berlin"
    assert " Berlin" not in top1[:N_LAYERS]
    assert [r["is_answer"] for r in pure] == [False] * N_LAYERS + [True]
    diag = emb.result.diagnostics
    assert diag["L_semantic"] == N_LAYERS
    # No copy collapse on this model and prompt, so no delta either.
    assert diag["L_copy"] is None and diag["delta_layers"] is None
    assert diag["L_copy_H"] is None  # next-token entropy never drops to <= 1 bit


@pytest.mark.slow
def test_embedded_final_prediction_is_berlin(emb: Any) -> None:
    final = emb.result.json_data["final_prediction"]
    token, prob = final["topk"][0]
    assert token == " Berlin"
    assert 0.80 < prob < 0.84
    assert len(final["topk"]) == 20
    probs = [p for _, p in final["topk"]]
    assert probs == sorted(probs, reverse=True)
    # The model's own distribution: its entropy is that of the last lens layer too.
    assert final["entropy"] == pytest.approx(emb.result.pure_records[-1]["entropy"], abs=1e-4)


@pytest.mark.slow
def test_embedded_records_csv_rows_and_verbose_positions(
    emb: Any, emb_files: dict[str, Path]
) -> None:
    from lenscheck.schema import read_csv, validate_csv

    assert validate_csv(emb_files["records"]) == []
    table = read_csv(emb_files["records"])
    assert table.kind == "records" and table.top_k_verbose == 20
    assert len(table.rows) == (N_LAYERS + 1) * 17
    verbose = _expected_verbose(PROMPT_TOKENS)
    assert verbose == {11, 13, 16}  # " capital", " Germany", the last position
    for i, row in enumerate(table.rows):
        assert (row.layer, row.pos) == divmod(i, 17)
        assert row.token == PROMPT_TOKENS[row.pos]
        assert len(row.topk) == (20 if row.pos in verbose else 5), (row.layer, row.pos)
        assert row.rest_mass == pytest.approx(max(0.0, 1 - sum(p for _, p in row.topk)))
        assert 0.0 <= row.entropy <= math.log2(49152) + 1e-6
    # The CSV holds the lens' numbers, not something re-derived.
    assert [r.entropy for r in table.rows[:17]] == emb.result.entropies[0].tolist()


@pytest.mark.slow
def test_embedded_pure_csv_rows(emb: Any, emb_files: dict[str, Path]) -> None:
    from lenscheck.lens import NEXT_TOKEN
    from lenscheck.schema import FLAG_COLUMNS, read_csv, validate_csv

    assert NEXT_TOKEN == "⟨NEXT⟩"
    assert validate_csv(emb_files["pure"]) == []
    table = read_csv(emb_files["pure"])
    assert table.kind == "pure" and len(table.rows) == N_LAYERS + 1
    header = emb_files["pure"].read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[-3:] == list(FLAG_COLUMNS)
    for row in table.rows:
        assert row.token == "⟨NEXT⟩" and row.pos == 16
        assert len(row.topk) == 5 and len(row.flags) == 3
        copy_collapse, entropy_collapse, is_answer = row.flags
        # The rule's fallback: entropy < 1 bit counts as collapse; no prompt echo reaches
        # p1 > 0.9 on this model, so the flag is exactly the fallback here.
        assert copy_collapse == (row.entropy < 1.0)
        assert not (row.topk[0][1] > 0.9 and copy_collapse)
        assert entropy_collapse == (row.entropy <= 1.0)
        assert is_answer == (row.topk[0][0].strip() == "Berlin")
    assert [r.flags[2] for r in table.rows].index(True) == N_LAYERS


@pytest.mark.slow
def test_embedded_json_layout(emb: Any, emb_files: dict[str, Path]) -> None:
    from lenscheck.prompts import TEST_PROMPTS

    data = json.loads(emb_files["json"].read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(emb.result.json_data))  # the file is the result
    assert list(data) == ORIGINAL_TOP_LEVEL_KEYS
    assert data["prompt"] == {
        "type": "prompt",
        "context_prompt": "Give the city name only, plain text. The capital of Germany is called "
        "simply",
        "ground_truth": "Berlin",
    }
    tests = data["test_prompts"]
    assert [t["prompt"] for t in tests] == list(TEST_PROMPTS) and len(tests) == 14
    assert all(len(t["topk"]) == 10 and t["entropy"] > 0 for t in tests)
    for t in tests:
        probs = [p for _, p in t["topk"]]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
    temps = data["temperature_exploration"]
    assert [t["temperature"] for t in temps] == [0.1, 2.0]
    assert [len(t["topk"]) for t in temps] == [15, 15]
    # Cold is sharper than hot, and both keep the model's top-1.
    assert temps[0]["entropy"] < data["final_prediction"]["entropy"] < temps[1]["entropy"]
    assert temps[0]["topk"][0][0] == temps[1]["topk"][0][0] == " Berlin"
    assert len(data["final_prediction"]["topk"]) == 20
    stats = data["model_stats"]
    assert {k: stats[k] for k in ("num_layers", "d_model", "n_heads", "d_vocab", "n_ctx")} == {
        "num_layers": 30,
        "d_model": 576,
        "n_heads": 9,
        "d_vocab": 49152,
        "n_ctx": 8192,
    }
    assert stats["architecture"] == "pre_norm"


@pytest.mark.slow
def test_embedded_diagnostics_keep_original_keys_then_new_ones(
    emb: Any, emb_files: dict[str, Path]
) -> None:
    diag = json.loads(emb_files["json"].read_text(encoding="utf-8"))["diagnostics"]
    keys = list(diag)
    assert keys[: len(ORIGINAL_DIAGNOSTIC_KEYS)] == ORIGINAL_DIAGNOSTIC_KEYS
    new = keys[len(ORIGINAL_DIAGNOSTIC_KEYS) :]
    assert new[0] == "last_layer_consistency"
    for key in ("backend", "versions", "tokenization"):
        assert key in new
    assert diag["tokenization"]["prepend_bos"] is True
    assert diag["tokenization"]["n_tokens"] == 17
    assert diag["type"] == "diagnostics"
    assert diag["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert diag["device"] == "cpu" and diag["backend"] == "transformers"
    assert diag["use_norm_lens"] is True and diag["use_fp32_unembed"] is True
    assert diag["unembed_dtype"] == "torch.float32"
    assert diag["first_block_ln1_type"] == diag["final_ln_type"] == "LlamaRMSNorm"
    assert diag["layernorm_bias_fix"] == "not_needed_rms_model"
    assert diag["layer0_position_info"] == "token_only_rotary_model"
    assert {"torch", "transformers", "lenscheck"} <= set(diag["versions"])
    llc = diag["last_layer_consistency"]
    assert llc["kl_bits_max"] < 1e-6 and llc["top1_agree"] is True
    assert diag["ground_truth_single_token"] is True


@pytest.mark.slow
def test_embedded_file_names(emb: Any, emb_files: dict[str, Path]) -> None:
    names = sorted(p.name for p in emb_files["json"].parent.iterdir())
    assert names == [
        f"output-{EMBEDDED_FILE_NAME}-pure-next-token.csv",
        f"output-{EMBEDDED_FILE_NAME}-records.csv",
        f"output-{EMBEDDED_FILE_NAME}.json",
    ]
    assert emb.resolved.name == EMBEDDED_FILE_NAME


# ---------------------------------------------------- shape against the published files


def _published(pattern: str) -> list[Path]:
    if not PUBLISHED_DIR.is_dir():
        pytest.skip(f"no published reference run at {PUBLISHED_DIR}")
    files = sorted(PUBLISHED_DIR.glob(pattern))
    if not files:
        pytest.skip(f"no {pattern} in {PUBLISHED_DIR}")
    return files


def _first_line(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.readline()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["records", "pure"])
def test_csv_headers_match_published_byte_for_byte(kind: str, emb_files: dict[str, Path]) -> None:
    pattern = "output-*-records.csv" if kind == "records" else "output-*-pure-next-token.csv"
    ours = _first_line(emb_files[kind])
    for path in _published(pattern):
        assert _first_line(path) == ours, path.name


def _key_order_matches(ours: Any, theirs: Any, where: str) -> None:
    """Every key of the published dict is present, in the published order."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert [k for k in ours if k in theirs] == list(theirs), where
        for key, value in theirs.items():
            _key_order_matches(ours[key], value, f"{where}.{key}")
    elif isinstance(theirs, list) and theirs and isinstance(theirs[0], dict):
        assert isinstance(ours, list) and ours, where
        _key_order_matches(ours[0], theirs[0], f"{where}[0]")


@pytest.mark.slow
def test_json_key_order_matches_published(emb_files: dict[str, Path]) -> None:
    ours = json.loads(emb_files["json"].read_text(encoding="utf-8"))
    for path in _published("output-*.json"):
        theirs = json.loads(path.read_text(encoding="utf-8"))
        assert list(theirs) == ORIGINAL_TOP_LEVEL_KEYS, path.name
        assert list(theirs["diagnostics"]) == ORIGINAL_DIAGNOSTIC_KEYS, path.name
        _key_order_matches(ours, theirs, path.name)


# ============================================================ part 2: a model-free backend

SHORT_PROBES = ("The capital of Germany is",)


def _cfg(**changes: Any) -> Any:
    """The behaviour spec (docs/design.md section 3) is the original preset's; what the
    standard preset does differently is pinned in tests/test_lens_standard.py."""
    from lenscheck.config import LensConfig

    return LensConfig(**{"test_prompts": SHORT_PROBES, "preset": "original", **changes})


def _residuals(fb: Any, n_tokens: int = 6, seed: int = 1) -> list[Any]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    d = fb.facts.d_model
    # Offset and scale so LayerNorm (centring), RMSNorm (scale) and the affine terms all
    # change the values: a lens applying the wrong module cannot pass by accident.
    return [
        3.0 * torch.randn(n_tokens, d, generator=gen) + 0.5 for _ in range(fb.facts.num_layers + 1)
    ]


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_pre_norm_lens_uses_next_blocks_ln1_and_final_norm_last(norm: str) -> None:
    import torch

    from lenscheck.lens import normalized_residuals
    from lenscheck.norms import lens_norm_modules

    fb = make_fake_backend(architecture="pre_norm", norm=norm, n_layers=3)
    blocks, n = fb.stack.blocks, fb.facts.num_layers
    expected_modules = [blocks[0].ln1, blocks[1].ln1, blocks[2].ln1, fb.stack.ln_final]
    assert [id(m) for m in lens_norm_modules(fb.stack)] == [id(m) for m in expected_modules]
    res = _residuals(fb)
    normed = normalized_residuals(fb, res)
    assert normed.shape == (n + 1, 6, fb.facts.d_model)
    with torch.no_grad():
        for layer, module in enumerate(expected_modules):
            torch.testing.assert_close(normed[layer], module(res[layer]), rtol=1e-5, atol=1e-5)
        # Teeth: the neighbouring candidates give visibly different vectors.
        assert (normed[1] - blocks[0].ln2(res[1])).abs().max() > 0.1
        assert (normed[1] - blocks[0].ln1(res[1])).abs().max() > 0.1
        assert (normed[n] - blocks[n - 1].ln1(res[n])).abs().max() > 0.1


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_post_norm_lens_uses_previous_blocks_ln2(norm: str) -> None:
    import torch

    from lenscheck.lens import normalized_residuals

    fb = make_fake_backend(architecture="post_norm", norm=norm, n_layers=3)
    blocks = fb.stack.blocks
    assert fb.stack.ln_final is None
    expected = [blocks[0].ln1, blocks[0].ln2, blocks[1].ln2, blocks[2].ln2]
    res = _residuals(fb)
    normed = normalized_residuals(fb, res)
    with torch.no_grad():
        for layer, module in enumerate(expected):
            torch.testing.assert_close(normed[layer], module(res[layer]), rtol=1e-5, atol=1e-5)
        assert (normed[2] - blocks[2].ln1(res[2])).abs().max() > 0.1  # not pre-norm's choice
    result = _run(fb)
    assert result.diagnostics["norm_alignment_fix"].startswith("using_ln2_")
    assert result.json_data["model_stats"]["architecture"] == "post_norm"


def _run(fb: Any, **changes: Any) -> Any:
    from lenscheck.lens import run_lens

    return run_lens(fb, _cfg(**changes))


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_lens_at_last_layer_equals_model_logits(norm: str) -> None:
    import torch

    from lenscheck.backends.base import LayerStack
    from lenscheck.lens import lens_logits
    from lenscheck.numerics import kl_bits

    fb = make_fake_backend(norm=norm)
    result = _run(fb)
    lens_last = result.extras["lens_logits_last"]
    model = result.extras["model_logits"]
    torch.testing.assert_close(lens_last, model, rtol=1e-5, atol=1e-4)
    llc = result.diagnostics["last_layer_consistency"]
    assert llc["kl_bits_max"] < 1e-6 and llc["top1_agree"] is True
    assert result.json_data["final_prediction"]["topk"][0][0] == fb.decode(int(model[-1].argmax()))
    # Teeth: lensing the last layer through any other norm breaks the identity.
    capture = fb.run(result.input_ids)
    wrong = LayerStack(fb.stack.architecture, fb.stack.blocks, fb.stack.blocks[-1].ln1)
    fb.stack = wrong
    assert float(kl_bits(model, lens_logits(fb, capture.residuals)[-1]).max()) > 1e-2


def test_unembedder_applies_the_softcap() -> None:
    import torch

    from lenscheck.backends.base import Unembedder

    gen = torch.Generator().manual_seed(3)
    weight = 4.0 * torch.randn(50, 8, generator=gen)
    x = 3.0 * torch.randn(5, 8, generator=gen)
    raw = x @ weight.T
    assert raw.abs().max() > 30.0  # the cap has something to do
    capped = Unembedder(weight=weight, bias=None, softcap=30.0, promote=True)(x)
    torch.testing.assert_close(capped, 30.0 * torch.tanh(raw / 30.0), rtol=1e-6, atol=1e-5)
    assert capped.abs().max() < 30.0
    plain = Unembedder(weight=weight, bias=None, softcap=None, promote=True)(x)
    torch.testing.assert_close(plain, raw, rtol=1e-6, atol=1e-5)


def test_softcapped_model_is_reproduced_by_the_lens() -> None:
    fb = make_fake_backend(softcap=2.0)
    result = _run(fb)
    model = result.extras["model_logits"]
    assert model.abs().max() <= 2.0  # the fake's own forward caps...
    fb.softcap = None
    assert fb.forward(result.input_ids)[1].abs().max() > 4.0  # ...logits that exceed the cap
    llc = result.diagnostics["last_layer_consistency"]
    assert llc["kl_bits_max"] < 1e-6 and llc["top1_agree"] is True


@pytest.mark.parametrize(
    ("dtype_name", "promote", "fp32", "bias", "softcap", "in_place"),
    [
        ("float32", True, False, False, None, True),
        ("float32", True, False, False, 30.0, True),
        ("float32", False, False, False, None, True),
        ("float32", True, False, True, None, False),  # a bias: linear, a new tensor
        ("bfloat16", False, False, False, None, False),  # a bf16 matmul: a new tensor
        ("bfloat16", False, True, False, 30.0, True),  # fp32 on request: in place
        ("float16", True, False, False, None, True),  # promoted: the fp32 copy, in place
    ],
)
def test_unembedder_out_buffer_gives_the_same_bits(
    dtype_name: str, promote: bool, fp32: bool, bias: bool, softcap: float | None, in_place: bool
) -> None:
    """``out=``: the lens' scratch buffer gets the very logits a fresh call returns, and
    is used only where the matmul runs in fp32 without a bias."""
    import torch

    from lenscheck.backends.base import Unembedder

    gen = torch.Generator().manual_seed(5)
    dtype = getattr(torch, dtype_name)
    weight = (4.0 * torch.randn(300, 16, generator=gen)).to(dtype)
    b = torch.randn(300, generator=gen).to(dtype) if bias else None
    x = (3.0 * torch.randn(9, 16, generator=gen)).to(dtype)
    unembed = Unembedder(weight=weight, bias=b, softcap=softcap, promote=promote)
    fresh = unembed(x, fp32=fp32)
    buf = torch.full((9, 300), float("nan"))
    got = unembed(x, fp32=fp32, out=buf)
    assert got.dtype == torch.float32 and torch.equal(got, fresh)
    assert (got.data_ptr() == buf.data_ptr()) is in_place
    assert torch.isnan(buf).all() is not in_place  # untouched when not used


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_unembedder_promotes_low_precision_weight_to_fp32(dtype_name: str) -> None:
    import torch

    from lenscheck.backends.base import Unembedder
    from lenscheck.device import should_auto_promote_unembed

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(4)
    weight = torch.randn(64, 32, generator=gen).to(dtype)
    x = torch.randn(7, 32, generator=gen).to(dtype)
    promoted = Unembedder(weight=weight, bias=None, softcap=None, promote=True)
    assert promoted.dtype == torch.float32
    out = promoted(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x.float() @ weight.float().T, rtol=1e-6, atol=1e-6)
    native = Unembedder(weight=weight, bias=None, softcap=None, promote=False)
    assert native.dtype == dtype
    low = native(x)
    assert low.dtype == torch.float32  # logits are always handed out in fp32
    torch.testing.assert_close(low, (x @ weight.T).float())
    if dtype == torch.bfloat16:
        assert not torch.equal(low, out)  # bf16 rounding: promotion changed the numbers
    assert should_auto_promote_unembed(torch.float32) is True
    assert should_auto_promote_unembed(dtype) is False


# ------------------------------------------------------------- errors, word for word


def _nan_message(layer: int, kind: str) -> str:
    return (
        f"residual at lens layer {layer} contains {kind} (dtype torch.float32); fp16 overflow is "
        "the usual cause: rerun with --dtype bfloat16 or float32 (pytest: --lens-dtype)"
    )


def _suite_file(tmp_path: Path, *cases: tuple[str, str, tuple[str, ...]]) -> Any:
    """A prompt suite file of ``(id, prompt, probes)`` entries (answer: Berlin), loaded."""
    from lenscheck.suites import load_suite

    lines = []
    for pid, prompt, probes in cases:
        lines += [
            "[[prompts]]",
            f"id = {json.dumps(pid)}",
            f"prompt = {json.dumps(prompt)}",
            'answer = "Berlin"',
            f"probes = {json.dumps(list(probes))}",
        ]
    path = tmp_path / "capitals.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_suite(path)


@pytest.mark.parametrize(
    ("layer", "value", "kind"), [(2, math.nan, "NaN"), (0, math.inf, "inf"), (1, -math.inf, "inf")]
)
def test_non_finite_residual_raises_naming_the_layer(layer: int, value: float, kind: str) -> None:
    from lenscheck.lens import NonFiniteResidualError

    fb = make_fake_backend()

    def corrupt(residuals: list[Any]) -> None:
        residuals[layer][3, 1] = value

    fb.corrupt = corrupt
    with pytest.raises(NonFiniteResidualError) as info:
        _run(fb)
    assert str(info.value) == _nan_message(layer, kind)
    assert issubclass(NonFiniteResidualError, ArithmeticError)  # the CLI's exit-2 family


def test_non_finite_residual_of_a_suite_prompt_names_the_file_and_prompt(tmp_path: Path) -> None:
    from lenscheck.lens import NonFiniteResidualError, run_suite

    suite = _suite_file(tmp_path, ("short", "The capital", ()), ("long", PROMPT, ()))
    fb = make_fake_backend()

    def corrupt(residuals: list[Any]) -> None:
        if residuals[0].shape[0] > 3:  # the long prompt only
            residuals[1][0, 0] = math.nan

    fb.corrupt = corrupt
    with pytest.raises(NonFiniteResidualError) as info:
        run_suite(fb, suite, _cfg())
    assert str(info.value) == f"{suite.source}: prompt 'long': " + _nan_message(1, "NaN")


def _corrupt_logits(fb: Any, text: str, value: float) -> None:
    """``fb``'s own logits for ``text`` get ``value`` at the last position, residuals intact."""
    import torch

    run, target = fb.run, fb.encode(text)

    def corrupted(ids: list[int]) -> Any:
        capture = run(ids)
        if ids == target:
            capture.logits[-1, 0] = value
        return capture

    fb.run = corrupted
    fb.dtype = torch.float16  # the backend's compute dtype, whatever the residuals hold


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_model_logits_with_finite_residuals_blame_the_head(
    tmp_path: Path, value: float
) -> None:
    from lenscheck.lens import NonFiniteResidualError, run_suite
    from lenscheck.lens.finite import OVERFLOW_FIX

    suite = _suite_file(tmp_path, ("short", "The capital", ()), ("long", PROMPT, ()))
    fb = make_fake_backend()
    _corrupt_logits(fb, PROMPT, value)
    with pytest.raises(NonFiniteResidualError) as info:
        run_suite(fb, suite, _cfg())
    assert str(info.value) == (
        f"{suite.source}: prompt 'long': the model's own logits are not finite though every "
        "residual is (dtype torch.float16): the overflow is in its final norm or unembedding; "
        + OVERFLOW_FIX
    )


@pytest.mark.parametrize("where", ["prompt", "probe"])
def test_a_masked_model_logit_is_not_an_error(where: str) -> None:
    """-inf is a legitimate mask in the prompt's and in a probe's own logits alike."""
    from lenscheck.lens import run_lens

    fb = make_fake_backend()
    _corrupt_logits(fb, PROMPT if where == "prompt" else PROBES[1], -math.inf)
    result = run_lens(fb, _lens_cfg())
    final = result.json_data["final_prediction"]["topk"]
    probe = result.json_data["test_prompts"][1]["topk"]
    assert fb.decode(0) not in [t for t, _ in (final if where == "prompt" else probe)]


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_probe_logits_name_the_probe(tmp_path: Path, value: float) -> None:
    from lenscheck.lens import NonFiniteResidualError, run_suite
    from lenscheck.lens.finite import OVERFLOW_FIX

    suite = _suite_file(tmp_path, ("one", PROMPT, ("The capital", "Berlin is")))
    fb = make_fake_backend()
    _corrupt_logits(fb, "Berlin is", value)
    with pytest.raises(NonFiniteResidualError) as info:
        run_suite(fb, suite, _cfg())
    assert str(info.value) == (
        f"{suite.source}: prompt 'one': probe 'Berlin is': the model's own logits are not "
        f"finite (dtype torch.float16); {OVERFLOW_FIX}"
    )


def _too_long(what: str, n: int) -> str:
    return (
        f"{what} is {n} tokens long but fake/pre_norm-layernorm has a context of 5 tokens; "
        "shorten the prompt"
    )


def test_prompt_or_probe_longer_than_context_raises(tmp_path: Path) -> None:
    from lenscheck.lens import run_suite

    fb = make_fake_backend(n_ctx=5)
    # BOS + 4 words == n_ctx: accepted, for the prompt and for a probe.
    ok = _run(fb, prompt="The capital of Germany", test_prompts=("The capital of Germany",))
    assert len(ok.input_ids) == 5
    with pytest.raises(ValueError) as info:
        _run(fb, prompt="The capital of Germany is", test_prompts=("The",))
    assert str(info.value) == _too_long("prompt", 6)
    with pytest.raises(ValueError) as info:
        _run(fb, prompt="The capital", test_prompts=("The", "The capital of Germany is"))
    assert str(info.value) == _too_long("probe 'The capital of Germany is'", 6)
    # From a suite file: the message names the file and the prompt id first.
    suite = _suite_file(
        tmp_path,
        ("fits", "The capital of Germany", ("The capital",)),
        ("long-probe", "The capital", ("Berlin is the capital of",)),
    )
    with pytest.raises(ValueError) as info:
        run_suite(fb, suite, _cfg())
    assert str(info.value) == f"{suite.source}: prompt 'long-probe': " + _too_long(
        "probe 'Berlin is the capital of'", 6
    )


def test_empty_prompt_raises() -> None:
    from _lens_fixtures import FakeTokenizer

    from lenscheck.backends.tokens import TokenCodec
    from lenscheck.config import LensConfig

    for text in ("", "   \n"):
        with pytest.raises(ValueError, match="prompt is empty"):
            LensConfig(prompt=text)
    with pytest.raises(ValueError, match="prompt is empty"):
        TokenCodec(FakeTokenizer()).encode("")


def test_multi_piece_ground_truth_is_warned_and_recorded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fb = make_fake_backend()
    single = _run(fb)
    assert single.diagnostics["ground_truth_single_token"] is True
    assert single.diagnostics["ground_truth_token_ids"] == [2]  # " Berlin"
    with caplog.at_level(logging.WARNING, logger="lenscheck.lens"):
        result = _run(fb, ground_truth="Ber lin")
    assert [r.getMessage() for r in caplog.records if r.name == "lenscheck.lens"] == [
        "ground truth 'Ber lin' tokenizes to 2 pieces; is_answer compares the top-1 text "
        "with the whole string"
    ]
    assert result.diagnostics["ground_truth_single_token"] is False
    assert result.diagnostics["ground_truth_token_ids"] == [17, 18]  # " Ber", " lin"
    assert result.json_data["prompt"]["ground_truth"] == "Ber lin"


@pytest.mark.parametrize("change", [-1, 1])
def test_backend_returning_the_wrong_number_of_captures_is_an_error(
    change: int, tmp_path: Path
) -> None:
    from lenscheck.lens import run_suite

    fb = make_fake_backend(n_layers=2)
    full = fb.run_batch

    def wrong(batch: Any) -> list[Any]:
        out = full(batch)
        return out[:change] if change < 0 else out + out[:change]

    fb.run_batch = wrong  # type: ignore[method-assign]
    # Per prompt: the first, with two probes, is three sequences, one capture each.
    suite = _suite_file(tmp_path, ("a", "The capital", ("a", "b")), ("b", "Berlin is", ("c",)))
    with pytest.raises(RuntimeError) as info:
        run_suite(fb, suite, _cfg())
    assert str(info.value) == (
        f"backend 'fake' returned {3 + change} captures for a prompt and its 2 probes; "
        "expected one per sequence"
    )


# --------------------------------------------- the fake run against an independent computation
#
# The slow embedded-model tests pin the JSON against the published files; these pin the same
# structure on the model-free FakeBackend, against values computed here independently.

PROBES = ("The capital of Germany is", "Berlin is the capital of")
PROMPT = "Give the city name only, plain text. The capital of Germany is"  # ends on " is"
POINTS = ("next-ln1", "final", "raw")


def _lens_cfg(**changes: Any) -> Any:
    from lenscheck.config import LensConfig

    # The original preset, as _cfg (the spec's behaviour).
    return LensConfig(**{"prompt": PROMPT, "test_prompts": PROBES, "preset": "original", **changes})


def _bits(logits: Any) -> float:
    import torch

    p = torch.softmax(logits.double(), dim=-1)
    return float(-torch.special.xlogy(p, p).sum()) / math.log(2)  # 0 log 0 = 0


def _top(fb: Any, logits: Any, k: int) -> list[list[Any]]:
    import torch

    p = torch.softmax(logits.double(), dim=-1)
    order = torch.argsort(logits, descending=True)[:k].tolist()
    return [[fb.decode(i), float(p[i])] for i in order]


def _same_pairs(got: list[list[Any]], want: list[list[Any]]) -> None:
    assert [t for t, _ in got] == [t for t, _ in want]
    assert [p for _, p in got] == pytest.approx([p for _, p in want], abs=1e-6)


def _decode_norms(fb: Any, point: str) -> list[Any]:
    """Per lens layer, the norm module decoding ``point`` applies, chosen here by hand."""
    stack, blocks = fb.stack, fb.stack.blocks
    if point == "raw":
        return [None] * (len(blocks) + 1)
    if point == "final":  # a post-norm model without a final norm ends on its last ln2
        final = stack.ln_final if stack.ln_final is not None else blocks[-1].ln2
        return [final] * (len(blocks) + 1)
    if stack.architecture == "pre_norm":
        return [b.ln1 for b in blocks] + [stack.ln_final]
    return [blocks[0].ln1] + [b.ln2 for b in blocks]


def _expected_lens_logits(
    fb: Any, ids: list[int], point: str = "next-ln1"
) -> tuple[list[Any], Any]:
    """Per lens layer, the logits [T, V] through the norm ``point`` applies there (by hand)."""
    import torch

    residuals, model_logits = fb.forward(ids)
    w = fb.lm_weight.float()
    with torch.no_grad():
        lens = [
            (r if norm is None else norm(r)) @ w.T
            for norm, r in zip(_decode_norms(fb, point), residuals)
        ]
    return lens, model_logits


@pytest.mark.parametrize("point", POINTS)
def test_lens_logits_decode_through_the_points_norms(point: str) -> None:
    import torch

    from lenscheck.lens import lens_logits

    fb = make_fake_backend(n_layers=3)
    ids = fb.encode(PROMPT)
    expected, _ = _expected_lens_logits(fb, ids, point)
    got = lens_logits(fb, fb.forward(ids)[0], point)
    assert got.shape == (4, len(ids), fb.facts.d_vocab)
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("point", POINTS)
def test_fake_run_records_and_probes_match_an_independent_computation(point: str) -> None:
    import torch

    from lenscheck.lens import NEXT_TOKEN, run_lens

    fb = make_fake_backend(n_layers=3)
    result = run_lens(fb, _lens_cfg(decode_norm=point))
    ids = fb.encode(PROMPT)
    assert result.input_ids == ids and len(ids) == 13  # BOS + 12 words
    assert result.diagnostics["tokenization"]["n_tokens"] == 13
    assert result.diagnostics["decode_norm"] == point
    assert result.diagnostics["use_norm_lens"] is (point != "raw")
    assert result.diagnostics["decoding_ablation"]["chosen"] == point
    lens, model_logits = _expected_lens_logits(fb, ids, point)
    tokens = [fb.token_text(i) for i in ids]
    verbose = _expected_verbose(tokens)
    assert len(tokens) - 1 in verbose and tokens[-1] == " is"  # last position, no keyword
    n = 0
    for layer, logits in enumerate(lens):
        for pos in range(len(ids)):
            rec = result.records[n]
            n += 1
            assert list(rec) == ["type", "layer", "pos", "token", "entropy", "topk"]
            assert (rec["type"], rec["layer"], rec["pos"], rec["token"]) == (
                "record",
                layer,
                pos,
                tokens[pos],
            )
            assert rec["entropy"] == pytest.approx(_bits(logits[pos]), abs=1e-4)
            _same_pairs(rec["topk"], _top(fb, logits[pos], 20 if pos in verbose else 5))
    assert n == len(result.records) == 4 * len(ids)
    assert len(result.pure_records) == 4
    for layer, (rec, logits) in enumerate(zip(result.pure_records, lens)):
        assert list(rec) == [
            "type",
            "layer",
            "pos",
            "token",
            "entropy",
            "topk",
            "copy_collapse",
            "entropy_collapse",
            "is_answer",
        ]
        assert (rec["type"], rec["layer"], rec["pos"], rec["token"]) == (
            "pure_next_token_record",
            layer,
            len(ids) - 1,
            NEXT_TOKEN,
        )
        assert rec["entropy"] == pytest.approx(_bits(logits[-1]), abs=1e-4)
        _same_pairs(rec["topk"], _top(fb, logits[-1], 5))
    # The probes: the model's own next-token distribution, at T = 1, 0.1 and 2.
    tests = result.json_data["test_prompts"]
    assert [list(t) for t in tests] == [["type", "prompt", "entropy", "topk"]] * len(PROBES)
    for probe, got in zip(PROBES, tests):
        logits = fb.forward(fb.encode(probe))[1][-1]
        assert (got["type"], got["prompt"]) == ("test_prompt", probe)
        assert got["entropy"] == pytest.approx(_bits(logits), abs=1e-4)
        _same_pairs(got["topk"], _top(fb, logits, 10))
    final = model_logits[-1]
    temps = result.json_data["temperature_exploration"]
    assert [(t["type"], t["temperature"]) for t in temps] == [
        ("temperature_exploration", 0.1),
        ("temperature_exploration", 2.0),
    ]
    for t in temps:
        assert list(t) == ["type", "temperature", "entropy", "topk"]
        assert t["entropy"] == pytest.approx(_bits(final / t["temperature"]), abs=1e-4)
        _same_pairs(t["topk"], _top(fb, final / t["temperature"], 15))
    fp = result.json_data["final_prediction"]
    assert list(fp) == ["type", "entropy", "topk"] and fp["type"] == "final_prediction"
    assert fp["entropy"] == pytest.approx(_bits(final), abs=1e-4)
    _same_pairs(fp["topk"], _top(fb, final, 20))
    # p(answer) per layer and decoding point: the next-token probability of " Berlin" (id 2).
    assert list(result.extras["p_answer"]) == list(POINTS)
    for each in POINTS:
        want = [
            float(torch.softmax(lg[-1].double(), -1)[2])
            for lg in _expected_lens_logits(fb, ids, each)[0]
        ]
        assert result.extras["p_answer"][each] == pytest.approx(want, abs=1e-6)
    # The consistency check reads the last layer through the final norm whatever the point.
    assert result.diagnostics["last_layer_consistency"]["kl_bits_max"] < 1e-6


def test_probe_prompts_each_get_their_own_distribution() -> None:
    """Probe i's entropy and top-k come from prompt i's logits, in the configured order."""
    fb = make_fake_backend(n_layers=2)
    prompts = ("Paris is in", "one two three four five", "The")
    result = _run(fb, test_prompts=prompts)
    probes = result.json_data["test_prompts"]
    assert [p["prompt"] for p in probes] == list(prompts)
    for probe, prompt in zip(probes, prompts, strict=True):
        logits = fb.forward(fb.encode(prompt))[1][-1]
        assert probe["entropy"] == pytest.approx(_bits(logits), abs=1e-4)
        _same_pairs(probe["topk"], _top(fb, logits, 10))


def test_no_probe_prompts_gives_an_empty_list() -> None:
    result = _run(make_fake_backend(n_layers=2), test_prompts=())
    assert result.json_data["test_prompts"] == []
    assert len(result.json_data["temperature_exploration"]) > 0


def test_fake_run_json_skeleton_and_diagnostics_are_exact() -> None:
    from lenscheck import __version__
    from lenscheck.lens import run_lens
    from lenscheck.prompts import TARGET_PREDICTION

    fb = make_fake_backend(n_layers=3)
    result = run_lens(fb, _lens_cfg(copy_threshold=0.8, copy_margin=0.1))
    data = result.json_data
    ids = result.input_ids
    assert list(data) == ORIGINAL_TOP_LEVEL_KEYS
    assert data["prompt"] == {"type": "prompt", "context_prompt": PROMPT, "ground_truth": "Berlin"}
    assert data["model_stats"] == {
        "type": "model_stats",
        "num_layers": 3,
        "d_model": 16,
        "n_heads": 2,
        "d_vocab": 24,
        "n_ctx": 64,
        "architecture": "pre_norm",
    }
    diag = data["diagnostics"]
    consistency, ablation = diag["last_layer_consistency"], diag["decoding_ablation"]
    assert list(consistency) == ["kl_bits_last_pos", "kl_bits_max", "top1_agree"]
    assert consistency["kl_bits_max"] < 1e-6 and consistency["top1_agree"] is True
    # Its values: test_decoding_ablation_matches_an_independent_computation.
    assert list(ablation) == ["chosen", "rule", *POINTS, "onset_disagreement"]
    expected = {
        "type": "diagnostics",
        "model": "fake/pre_norm-layernorm",
        "device": "cpu",
        "use_norm_lens": True,
        "use_fp32_unembed": True,
        "unembed_dtype": "torch.float32",
        "first_block_ln1_type": "LayerNorm",
        "final_ln_type": "LayerNorm",
        "layernorm_bias_fix": "active",
        "norm_alignment_fix": "using_ln2_layernorm_for_post_block",
        "layer0_norm_fix": "using_real_ln1_on_embeddings",
        "mixed_precision_fix": "casting_to_fp32_before_unembed",
        "layer0_position_info": "token_only_rotary_model",
        "context_prompt": PROMPT,
        "target_prediction": TARGET_PREDICTION,
        "L_copy": diag["L_copy"],
        "L_copy_H": diag["L_copy_H"],
        "L_semantic": diag["L_semantic"],
        "delta_layers": diag["delta_layers"],
        "last_layer_consistency": consistency,
        "backend": "fake",
        "model_source": "hub",
        "versions": {"lenscheck": __version__, "fake": "0"},
        "compute_dtype": "torch.float32",
        "architecture": "pre_norm",
        "model_class": "FakeForCausalLM",
        "tokenization": {"prepend_bos": True, "n_tokens": len(ids), "input_ids": ids},
        "copy_threshold": 0.8,
        "copy_margin": 0.1,
        "ground_truth_token_ids": [2],
        "ground_truth_single_token": True,
        "decode_norm": "next-ln1",
        "decoding_ablation": ablation,
    }
    assert diag == expected
    assert list(diag) == list(expected)
    assert list(diag)[: len(ORIGINAL_DIAGNOSTIC_KEYS)] == ORIGINAL_DIAGNOSTIC_KEYS
    assert TARGET_PREDICTION == "first unseen token (likely 'Berlin')"
    flags = [
        (r["copy_collapse"], r["entropy_collapse"], r["is_answer"]) for r in result.pure_records
    ]

    def first(i: int) -> int | None:
        return next((n for n, f in enumerate(flags) if f[i]), None)

    assert (diag["L_copy"], diag["L_copy_H"], diag["L_semantic"]) == (first(0), first(1), first(2))
    delta = None if first(0) is None or first(2) is None else first(2) - first(0)
    assert diag["delta_layers"] == delta


@pytest.mark.parametrize(
    ("seed", "onsets", "disagree"),
    [
        (0, (None, None), False),  # " Berlin" never top-1: nothing to disagree about
        (3, (3, 1), False),  # |3 - 1| == 2, the tolerance for 3 layers: still agreement
        (37, (0, 3), True),  # |0 - 3| == 3 > 2
        (32, (1, None), True),  # only next-ln1 reaches " Berlin"
    ],
)
def test_decoding_ablation_matches_an_independent_computation(
    seed: int, onsets: tuple[int | None, int | None], disagree: bool
) -> None:
    """Every decoding point's per-layer numbers, at the last position, computed by hand."""
    import torch

    from lenscheck.lens import ABLATION_RULE, run_lens

    fb = make_fake_backend(n_layers=3, seed=seed)
    result = run_lens(fb, _lens_cfg(test_prompts=()))
    block = result.diagnostics["decoding_ablation"]
    assert list(block) == ["chosen", "rule", *POINTS, "onset_disagreement"]
    assert (block["chosen"], block["rule"]) == ("next-ln1", ABLATION_RULE)
    found = {}
    for point in POINTS:
        lens = _expected_lens_logits(fb, result.input_ids, point)[0]
        logits = torch.stack([layer[-1] for layer in lens]).double()
        p = torch.softmax(logits, dim=-1)
        order = torch.argsort(logits, dim=-1, descending=True)
        top1 = [fb.decode(int(i)) for i in order[:, 0]]
        got = block[point]
        assert list(got) == [
            "L_semantic",
            "top1",
            "p_top1",
            "p_top2",
            "entropy",
            "p_answer",
            "answer_rank",
        ]
        assert got["top1"] == top1
        assert got["p_top1"] == pytest.approx(p.gather(-1, order[:, :1])[:, 0].tolist(), abs=1e-6)
        assert got["p_top2"] == pytest.approx(p.gather(-1, order[:, 1:2])[:, 0].tolist(), abs=1e-6)
        assert got["entropy"] == pytest.approx([_bits(row) for row in logits], abs=1e-4)
        assert got["p_answer"] == pytest.approx(p[:, 2].tolist(), abs=1e-6)  # " Berlin": id 2
        assert got["answer_rank"] == [1 + int((row > row[2]).sum()) for row in logits]
        assert result.extras["p_answer"][point] == got["p_answer"]
        found[point] = next((n for n, t in enumerate(top1) if t.strip() == "Berlin"), None)
        assert got["L_semantic"] == found[point]
    assert (found["next-ln1"], found["final"]) == onsets  # the case this seed stands for
    assert block["onset_disagreement"] is disagree


@pytest.mark.parametrize("k", [2, 5])
def test_the_ablation_at_the_runs_point_is_the_logit_lens_pass_itself(k: int) -> None:
    """At the run's own decoding point the ablation takes the logit lens' statistics, not a
    softmax of its own: its top-1, p_top1 and entropy are the pure CSV's, bit for bit, and
    its p_top2 the second largest probability, with the shortest records allowed too."""
    import torch

    from lenscheck.lens import run_lens

    fb = make_fake_backend(n_layers=3, seed=37)
    cfg = _lens_cfg(test_prompts=(), top_k_record=1, top_k_verbose=k)
    result = run_lens(fb, cfg)
    got = result.diagnostics["decoding_ablation"][cfg.decode_norm]
    pure = result.pure_records
    assert got["top1"] == [row["topk"][0][0] for row in pure]
    assert got["p_top1"] == [row["topk"][0][1] for row in pure]
    assert got["p_top2"] == [row["topk"][1][1] for row in pure]
    assert got["entropy"] == [row["entropy"] for row in pure]
    lens = _expected_lens_logits(fb, result.input_ids, cfg.decode_norm)[0]
    p = torch.softmax(torch.stack([layer[-1] for layer in lens]).double(), dim=-1)
    second = p.sort(dim=-1, descending=True).values[:, 1]
    assert got["p_top2"] == pytest.approx(second.tolist(), abs=1e-6)


def test_onset_tolerance_is_a_tenth_of_the_layers_and_at_least_two() -> None:
    from lenscheck.lens import ABLATION_RULE, onset_tolerance

    assert [onset_tolerance(n) for n in (0, 1, 20, 21, 30, 31, 80)] == [2, 2, 2, 3, 3, 4, 8]
    assert "max(2, ceil(num_layers / 10))" in ABLATION_RULE


def test_answer_without_pieces_has_zero_probability_and_no_rank(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from lenscheck.lens import run_lens

    fb = make_fake_backend(n_layers=2)
    tokenize = fb.prompt_ids
    fb.prompt_ids = lambda text: [] if text == " Berlin" else tokenize(text)  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="lenscheck.lens"):
        result = run_lens(fb, _lens_cfg(test_prompts=()))
    assert [r.getMessage() for r in caplog.records if r.name == "lenscheck.lens"] == [
        "ground truth 'Berlin' tokenizes to 0 pieces; is_answer compares the top-1 text "
        "with the whole string"
    ]
    diag = result.diagnostics
    assert (diag["ground_truth_token_ids"], diag["ground_truth_single_token"]) == ([], False)
    for point in POINTS:
        assert result.extras["p_answer"][point] == [0.0, 0.0, 0.0]
        assert diag["decoding_ablation"][point]["p_answer"] == [0.0, 0.0, 0.0]
        assert diag["decoding_ablation"][point]["answer_rank"] == [None, None, None]


def test_multi_piece_answer_is_read_at_its_first_piece() -> None:
    import torch

    from lenscheck.lens import run_lens

    fb = make_fake_backend(n_layers=2)
    result = run_lens(fb, _lens_cfg(ground_truth="Ber lin", test_prompts=()))
    lens = _expected_lens_logits(fb, result.input_ids)[0]
    want = [float(torch.softmax(layer[-1].double(), -1)[17]) for layer in lens]  # " Ber"
    assert result.extras["p_answer"]["next-ln1"] == pytest.approx(want, abs=1e-6)


def test_diagnostics_follow_the_norms_and_the_model() -> None:
    import dataclasses

    import torch

    from lenscheck.lens import run_lens

    fb = make_fake_backend(architecture="post_norm", norm="rmsnorm", n_layers=2)
    fb.facts = dataclasses.replace(fb.facts, has_pos_embed=True)
    fb.dtype = torch.float16  # what the backend reports; the fake still computes in fp32
    fb.unembed = type(fb.unembed)(
        weight=fb.lm_weight.half(), bias=None, softcap=None, promote=False
    )
    diag = run_lens(fb, _lens_cfg(test_prompts=PROBES[:1])).diagnostics
    assert (diag["first_block_ln1_type"], diag["final_ln_type"]) == ("RMSNorm", None)
    assert diag["layernorm_bias_fix"] == "not_needed_rms_model"
    assert diag["norm_alignment_fix"] == "using_ln2_rmsnorm_for_post_block"
    assert diag["layer0_position_info"] == "additive_pos_embed_included"
    assert (diag["use_fp32_unembed"], diag["unembed_dtype"]) == (False, "torch.float16")
    assert (diag["compute_dtype"], diag["architecture"]) == ("torch.float16", "post_norm")

    # Block 0 decides, not block 1: give them different norms.
    fb = make_fake_backend(norm="layernorm", n_layers=2)
    fb.stack.blocks[1].ln1 = torch.nn.RMSNorm(16)
    fb.stack.blocks[0].ln2 = None  # a pre-norm lens never uses ln2
    diag = run_lens(fb, _lens_cfg(test_prompts=PROBES[:1])).diagnostics
    assert (diag["first_block_ln1_type"], diag["layernorm_bias_fix"]) == ("LayerNorm", "active")
    assert diag["norm_alignment_fix"] == "fallback_to_ln1"
    fb = make_fake_backend(norm="rmsnorm", n_layers=2)
    fb.stack.blocks[1].ln1 = torch.nn.LayerNorm(16)
    fb.stack.blocks[1].ln2 = torch.nn.LayerNorm(16)
    diag = run_lens(fb, _lens_cfg(test_prompts=PROBES[:1])).diagnostics
    assert (diag["first_block_ln1_type"], diag["layernorm_bias_fix"]) == (
        "RMSNorm",
        "not_needed_rms_model",
    )
    assert diag["norm_alignment_fix"] == "using_ln2_rmsnorm_for_post_block"


def test_zero_block_model_reads_only_the_final_norm() -> None:
    from lenscheck.lens import run_lens

    fb = make_fake_backend(n_layers=0)
    result = run_lens(fb, _lens_cfg(test_prompts=PROBES[:1]))
    diag = result.diagnostics
    assert (diag["first_block_ln1_type"], diag["final_ln_type"]) == (None, "LayerNorm")
    assert diag["layernorm_bias_fix"] == "not_needed_rms_model"
    assert diag["norm_alignment_fix"] == "fallback_to_ln1"
    assert [r["layer"] for r in result.pure_records] == [0]
    assert diag["last_layer_consistency"]["kl_bits_max"] < 1e-6
    lens = _expected_lens_logits(fb, result.input_ids)[0]
    assert len(lens) == 1
    assert result.pure_records[0]["entropy"] == pytest.approx(_bits(lens[0][-1]), abs=1e-4)


# A model whose lens logits are whatever the test wants: width = vocabulary, unembedding =
# identity, decode_norm = raw, so the residual of layer l at position t *is* its lens logits.
OFF = -1e4  # exp(OFF - max) underflows to 0 in fp32: ids with probability exactly 0


def _logits_for(probs: dict[int, float]) -> Any:
    """Logits whose softmax puts ``probs`` on those ids and 0 elsewhere (24 ids)."""
    import math as _math

    import torch

    row = OFF - torch.arange(24.0)  # distinct: no tie among the zero-probability ids
    for i, p in probs.items():
        row[i] = _math.log(p)
    return row


def _table_backend(last: list[Any], decoy: Any) -> Any:
    """A FakeBackend whose lens reads ``last[l]`` at layer l's last position and ``decoy``
    everywhere else (three earlier positions: BOS + 'Give the city')."""
    import torch

    from lenscheck.backends.base import Capture, Unembedder

    fb = make_fake_backend(n_layers=len(last) - 1, d_model=24)
    fb.unembed = Unembedder(weight=torch.eye(24), bias=None, softcap=None, promote=True)
    residuals = [torch.stack([decoy, decoy, decoy, row]) for row in last]
    fb.run = lambda ids: Capture(  # type: ignore[method-assign]
        residuals=[r.clone() for r in residuals], logits=residuals[-1].clone()
    )
    return fb


def test_pure_record_flags_on_constructed_distributions() -> None:
    """Each flag's rule at the last position, including the entropy boundary (exactly 1 bit:
    entropy collapse, but no copy fallback, which is strict)."""
    from lenscheck.lens import NEXT_TOKEN, run_lens

    # Ids: 2 " Berlin", 3 " Germany", 4 " capital", 5 " the", 6 " of". Prompt ids: 11 "Give",
    # 5 " the", 12 " city". Copy threshold 0.3, margin 0.2.
    # 17 distinct small probabilities (no tie in a top-5) summing to 0.34 and 0.52.
    spread = {i: 0.02 + 0.0005 * (i - 15) for i in range(7, 24)}
    thin = {i: 0.52 / 17 + 0.0005 * (i - 15) for i in range(7, 24)}
    last = [
        _logits_for({5: 0.6, 6: 0.02, 3: 0.02, 4: 0.02, **spread}),  # echo, H > 1 bit
        _logits_for({3: 0.5, 6: 0.5}),  # H == 1 bit exactly, not a prompt id
        _logits_for({2: 0.9, 5: 0.1}),  # the answer; H < 1 bit: copy by the fallback
        _logits_for(
            {5: 0.45, 6: 0.3, 3: 0.15, 4: 0.1}
        ),  # p1 - p2 0.15 < 0.2: no echo (p1 - p3 is 0.3)
        _logits_for({5: 0.28, 6: 0.05, 3: 0.05, 4: 0.05, 2: 0.05, **thin}),  # p1 < 0.3: no echo
        _logits_for({3: 0.6, 6: 0.02, 5: 0.02, 4: 0.02, **spread}),  # not a prompt id
    ]
    decoy = _logits_for({5: 0.99, 6: 0.01})  # an echo at every other position
    fb = _table_backend(last, decoy)
    cfg = _lens_cfg(prompt="Give the city", test_prompts=(), decode_norm="raw")
    result = run_lens(fb, cfg.evolve(copy_threshold=0.3, copy_margin=0.2))
    recs = result.pure_records
    assert [(r["copy_collapse"], r["entropy_collapse"], r["is_answer"]) for r in recs] == [
        (True, False, False),
        (False, True, False),
        (True, True, True),
        (False, False, False),
        (False, False, False),
        (False, False, False),
    ]
    assert [(r["pos"], r["token"]) for r in recs] == [(3, NEXT_TOKEN)] * 6
    assert recs[1]["entropy"] == 1.0
    for n, (rec, logits) in enumerate(zip(recs, last)):
        assert rec["entropy"] == pytest.approx(_bits(logits), abs=1e-6)
        got, want = rec["topk"], _top(fb, logits, 5)
        if n == 1:  # " Germany" and " of" tie for the top: either order
            assert sorted(got[:2]) == [[" Germany", 0.5], [" of", 0.5]]
            got, want = got[2:], want[2:]
        _same_pairs(got, want)
    assert [t for t, _ in recs[2]["topk"][:2]] == [" Berlin", " the"]
    diag = result.diagnostics
    assert (diag["L_copy"], diag["L_copy_H"], diag["L_semantic"], diag["delta_layers"]) == (
        0,
        1,
        2,
        2,
    )


def test_last_layer_consistency_reads_every_position_and_reports_the_last() -> None:
    import torch

    from lenscheck.backends.base import Capture

    fb = make_fake_backend(n_layers=2)
    model_run = fb.run
    ids = fb.encode("Berlin is the capital of")
    _, plain = fb.forward(ids)

    def scaled(swap: bool) -> Any:
        logits = plain.clone()
        logits[1] *= 0.5  # the largest divergence, in the middle
        logits[-1] *= 0.8  # a smaller one at the last position
        if swap:  # a position whose top-1 the model and the lens disagree on
            logits[2] = -logits[2]
        return logits

    for swap in (False, True):
        model = scaled(swap)
        fb.run = lambda ids, m=model: Capture(  # type: ignore[method-assign]
            residuals=model_run(ids).residuals, logits=m
        )
        result = _run(fb, prompt="Berlin is the capital of", test_prompts=())
        lens = _expected_lens_logits(fb, ids)[0][-1].double()
        logp, logq = torch.log_softmax(model.double(), -1), torch.log_softmax(lens, -1)
        kl = ((logp.exp() * (logp - logq)).sum(-1) / math.log(2)).tolist()
        assert max(kl) > kl[-1] > 1e-3  # the maximum is not at the last position
        got = result.diagnostics["last_layer_consistency"]
        assert got["kl_bits_last_pos"] == pytest.approx(kl[-1], rel=1e-4)
        assert got["kl_bits_max"] == pytest.approx(max(kl), rel=1e-4)
        assert got["top1_agree"] is (not swap)


def test_lens_result_tensors_and_residuals() -> None:
    import torch

    from lenscheck.lens import run_lens

    fb = make_fake_backend(n_layers=3)
    result = run_lens(fb, _lens_cfg())
    lens, _ = _expected_lens_logits(fb, result.input_ids)
    want_ent = torch.tensor([[_bits(row) for row in layer] for layer in lens])
    torch.testing.assert_close(result.entropies, want_ent.float(), rtol=0, atol=1e-4)
    assert torch.equal(result.top1_ids, torch.stack([layer.argmax(-1) for layer in lens]))
    assert result.residuals is None  # not kept unless asked
    kept = run_lens(fb, _lens_cfg(keep_residuals=True)).residuals
    assert kept is not None and len(kept) == 4
    for got, want in zip(kept, fb.forward(result.input_ids)[0]):
        assert torch.equal(got, want)


def test_suite_results_are_each_prompts_own(tmp_path: Path) -> None:
    """Batched over a suite (prompts of different lengths), each prompt gets the numbers it
    has when run alone, under its own id, with its own answer and probes."""
    import torch

    from lenscheck.lens import run_lens, run_suite

    cases = (
        ("short", "The capital", ("Berlin is",)),
        ("long", PROMPT, PROBES),
        ("mid", "Berlin is the capital of", ()),
    )
    suite = _suite_file(tmp_path, *cases)
    fb = make_fake_backend(n_layers=3)
    results = run_suite(fb, suite, _lens_cfg())
    assert list(results) == ["short", "long", "mid"]
    for pid, prompt, probes in cases:
        got, alone = results[pid], run_lens(fb, _lens_cfg(prompt=prompt, test_prompts=probes))
        assert got.case is not None and got.case.id == pid
        assert got.input_ids == alone.input_ids == fb.encode(prompt)
        torch.testing.assert_close(got.entropies, alone.entropies, rtol=0, atol=1e-5)
        assert torch.equal(got.top1_ids, alone.top1_ids)
        assert [r["topk"][0][0] for r in got.records] == [r["topk"][0][0] for r in alone.records]
        assert [t["prompt"] for t in got.json_data["test_prompts"]] == list(probes)
        assert got.json_data["prompt"]["context_prompt"] == prompt
        assert got.diagnostics["L_semantic"] == alone.diagnostics["L_semantic"]


def test_lens_logits_that_overflow_name_the_layer_and_the_fix() -> None:
    """A raw (un-normalized) residual through a float16 unembedding overflows: the layer,
    the decoding point and the way out are named, not a bare 'logits contains +inf'."""
    import torch

    from lenscheck.config import LensConfig
    from lenscheck.lens import NonFiniteResidualError, run_lens

    fb = make_fake_backend(weight_dtype=torch.float16, promote=False)

    def huge(residuals: list[Any]) -> None:
        # Finite in float32, past 65504 in float16: one position of layer 2, then one of
        # layer 3 (the first overflowing row names the layer, not a later one).
        for layer, pos in ((2, 4), (3, 0)):
            residuals[layer] = residuals[layer].clone()
            residuals[layer][pos] *= 1e5

    fb.corrupt = huge
    cfg = LensConfig(test_prompts=(), decode_norm="raw")
    with pytest.raises(NonFiniteResidualError) as info:
        run_lens(fb, cfg)
    assert str(info.value) == (
        "the lens logits of layer 2 are not finite (decoding point raw, unembedding in "
        "torch.float16): the residual overflows it; rerun with --fp32-unembed, or --dtype "
        "bfloat16 or float32 (pytest: --lens-dtype)"
    )


def test_the_first_overflowing_row_names_the_layer_even_with_one_bad_logit() -> None:
    """One NaN logit in a row of layer 1 and a +inf in layer 2: the message names layer 1,
    the first bad row, not the row of the next bad logit."""
    import torch

    from lenscheck.config import LensConfig
    from lenscheck.lens import NonFiniteResidualError, run_lens

    fb = make_fake_backend(n_layers=3)  # 4 lens layers
    real = fb.unembed

    class Poisoned:
        dtype = real.dtype

        def __call__(self, part: torch.Tensor, **kw: Any) -> torch.Tensor:
            logits = real(part, **kw)
            if part.shape[0] > 4:  # the lens' [4 x width] rows, not the ablation's 4
                width = part.shape[0] // 4
                logits[width + 1, 3] = float("nan")
                logits[2 * width, :2] = float("inf")
            return logits

    fb.unembed = Poisoned()  # type: ignore[assignment]
    with pytest.raises(NonFiniteResidualError, match="lens logits of layer 1 are not finite"):
        run_lens(fb, LensConfig(test_prompts=()))


def test_the_ablation_unembeds_its_rows_in_fp32_whatever_the_unembedding() -> None:
    """The ablation's few rows per point include raw residuals, which overflow a float16
    unembedding: they are unembedded in fp32, so every point's values stay finite and
    exact while the chosen point (normed) runs in float16."""
    import torch

    fb = make_fake_backend(n_layers=3, weight_dtype=torch.float16, promote=False)

    def huge(residuals: list[Any]) -> None:
        residuals[2] = residuals[2] * 1e5  # finite in float32, past 65504 in float16

    fb.corrupt = huge
    result = _run(fb)
    raw = result.diagnostics["decoding_ablation"]["raw"]
    residuals = fb.run(result.input_ids).residuals
    expected = [r[-1].float() @ fb.lm_weight.float().T for r in residuals]
    assert raw["entropy"] == pytest.approx([_bits(x) for x in expected], abs=1e-4)
    assert raw["top1"] == [fb.decode(int(x.argmax())) for x in expected]
    assert result.diagnostics["unembed_dtype"] == "torch.float16"


@pytest.mark.parametrize(
    ("bias_value", "masked", "error"),
    [
        (float("nan"), 1, "the lens logits of layer 0 are not finite"),
        (float("inf"), 1, "the lens logits of layer 0 are not finite"),
        (float("-inf"), "all", "has a row where every value is -inf"),
        (float("-inf"), 1, None),  # a masked id is legitimate: p = 0, entropy finite
    ],
    ids=["nan", "+inf", "all-masked", "one-masked"],
)
def test_non_finite_lens_logits_are_caught_by_kind(
    bias_value: float, masked: Any, error: Any
) -> None:
    """The lens checks its per-row entropies, not every logit: each kind of bad logit must
    still reach the diagnosis, and a -inf mask must not."""
    import torch

    from lenscheck.backends.base import Unembedder
    from lenscheck.config import LensConfig
    from lenscheck.lens import NonFiniteResidualError, run_lens

    fb = make_fake_backend()
    bias = torch.zeros(fb.facts.d_vocab)
    bias[: None if masked == "all" else masked] = bias_value
    fb.unembed = Unembedder(weight=fb.lm_weight, bias=bias, softcap=None, promote=True)
    cfg = LensConfig(test_prompts=())
    if error is None:
        result = run_lens(fb, cfg)
        assert bool(torch.isfinite(result.entropies).all())
        assert 0 not in result.top1_ids.flatten().tolist()  # the masked id is never top-1
        return
    with pytest.raises((NonFiniteResidualError, ValueError), match=error):
        run_lens(fb, cfg)


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("k", [1, 3])
def test_lens_stats_of_one_prompt_match_an_independent_computation(point: str, k: int) -> None:
    """The single-prompt API: every cell's entropy and top-k, the last layer's logits and
    the next-token logits of every layer, against logits built by hand."""
    import torch

    from lenscheck.lens import lens_stats, lens_stats_batch

    fb = make_fake_backend(n_layers=3)
    ids = fb.encode(PROMPT)
    residuals, _ = fb.forward(ids)
    stats = lens_stats(fb, residuals, k, point)
    lens, _ = _expected_lens_logits(fb, ids, point)
    expected = torch.stack(lens).float()  # [L+1, T, V]
    n_layers, n_pos = len(lens), len(ids)
    assert stats.entropy.shape == (n_layers, n_pos)
    assert stats.top_ids.shape == stats.top_probs.shape == (n_layers, n_pos, k)
    for layer in range(n_layers):
        for pos in range(n_pos):
            assert float(stats.entropy[layer, pos]) == pytest.approx(
                _bits(expected[layer, pos]), abs=1e-4
            )
            want = _top(fb, expected[layer, pos], k)
            got = [
                [fb.decode(int(i)), float(p)]
                for i, p in zip(stats.top_ids[layer, pos], stats.top_probs[layer, pos])
            ]
            _same_pairs(got, want)
    torch.testing.assert_close(stats.last_layer, expected[-1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats.next_token, expected[:, -1], rtol=1e-5, atol=1e-5)
    batch = lens_stats_batch(fb, [residuals], k, point)[0]
    default = lens_stats(fb, residuals, k)  # the default point is next-ln1
    for field in ("entropy", "top_ids", "top_probs", "last_layer", "next_token"):
        assert torch.equal(getattr(stats, field), getattr(batch, field)), field
        same = torch.equal(getattr(default, field), getattr(stats, field))
        assert same or point != "next-ln1", field
    assert not torch.equal(default.entropy, stats.entropy) or point == "next-ln1"


# Rows per chunk: fewer and more than d_model (16); a budget under two rows (a vocabulary
# larger than half of _CHUNK_LOGITS) or under one row still goes one row at a time.
@pytest.mark.parametrize(("budget", "per_chunk"), [(10, 10), (20, 20), (1.5, 1), (0.5, 1)])
def test_the_lens_reuses_two_buffers_for_every_chunk(
    monkeypatch: pytest.MonkeyPatch, budget: float, per_chunk: int
) -> None:
    """Peak memory: each chunk's logits go into one buffer, its softmax into another, and
    the entropy's terms back into the first; no chunk allocates [rows, V] tensors of its
    own (fresh ones fragmented the heap: +190 MiB peak RSS on the embedded model)."""
    from lenscheck.lens import stats as lens_mod

    fb = make_fake_backend(n_layers=3)
    prompts = [fb.forward(fb.encode(text))[0] for text in (PROMPT, PROBES[0])]
    rows = 4 * sum(p[0].shape[0] for p in prompts)
    monkeypatch.setattr(lens_mod, "_CHUNK_LOGITS", int(budget * fb.facts.d_vocab))
    calls: list[tuple[str, tuple[int, ...], int, int | None]] = []
    unembed, entropy = fb.unembed, lens_mod.softmax_entropy

    def spy_unembed(part: Any, **kw: Any) -> Any:
        out = kw.get("out")
        logits = unembed(part, **kw)
        assert out is not None and logits.data_ptr() == out.data_ptr()  # written in place
        calls.append(("logits", tuple(logits.shape), logits.data_ptr(), None))
        return logits

    def spy_entropy(probs: Any, logits: Any, top_ids: Any, **kw: Any) -> Any:
        work = kw["work"]
        calls.append(("entropy", tuple(probs.shape), probs.data_ptr(), work.data_ptr()))
        return entropy(probs, logits, top_ids, **kw)

    topk, softmax_given = lens_mod.topk_probs, []

    def spy_topk(logits: Any, k: int, probs: Any = None) -> Any:
        softmax_given.append(None if probs is None else probs.data_ptr())  # not recomputed
        return topk(logits, k, probs=probs)

    fb.unembed = spy_unembed
    monkeypatch.setattr(lens_mod, "softmax_entropy", spy_entropy)
    monkeypatch.setattr(lens_mod, "topk_probs", spy_topk)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it resizes a wrong-shaped out=
        lens_mod.lens_stats_batch(fb, prompts, 3)
    even = -(-rows // -(-rows // per_chunk))  # as few chunks as fit, of equal length
    sizes = [min(even, rows - start) for start in range(0, rows, even)]
    assert [(kind, shape) for kind, shape, _, _ in calls] == [
        (kind, (n, fb.facts.d_vocab)) for n in sizes for kind in ("logits", "entropy")
    ]
    logits_at = {ptr for kind, _, ptr, _ in calls if kind == "logits"}
    probs_at = {ptr for kind, _, ptr, _ in calls if kind == "entropy"}
    work_at = {work for kind, _, _, work in calls if kind == "entropy"}
    assert len(logits_at) == len(probs_at) == 1 and work_at == logits_at != probs_at
    assert softmax_given == [*probs_at] * len(sizes)


def test_lens_scratch_is_fp32_on_the_rows_device_and_reused_while_it_fits() -> None:
    import torch

    from lenscheck.lens.stats import Scratch

    scratch, cpu = Scratch(), torch.device("cpu")
    meta = scratch.take("a", 4, 5, torch.device("meta"))
    assert (meta.device.type, meta.dtype, tuple(meta.shape)) == ("meta", torch.float32, (4, 5))
    first = scratch.take("a", 4, 5, cpu)  # another device: a new buffer
    assert (first.device.type, first.dtype) == ("cpu", torch.float32)
    other = scratch.take("b", 4, 5, cpu)  # another use: its own buffer
    assert other.data_ptr() != first.data_ptr()
    shorter = scratch.take("a", 2, 5, cpu)
    assert tuple(shorter.shape) == (2, 5) and shorter.data_ptr() == first.data_ptr()
    longer = scratch.take("a", 6, 5, cpu)
    assert tuple(longer.shape) == (6, 5) and longer.data_ptr() != first.data_ptr()
    assert tuple(scratch.take("a", 3, 7, cpu).shape) == (3, 7)  # another width
    assert scratch.take("b", 4, 5, cpu).data_ptr() == other.data_ptr()


def test_prompts_sharing_a_scratch_keep_their_own_numbers() -> None:
    """A result never points into the shared work buffers: the second prompt through the
    same scratch leaves the first one's stats as they were, and each equals a lone run."""
    import torch

    from lenscheck.lens.stats import Scratch, lens_stats

    fb = make_fake_backend(n_layers=2)
    a = fb.forward(fb.encode(PROMPT))[0]
    b = fb.forward(fb.encode("Another prompt, longer than the first one by far"))[0]
    scratch = Scratch()
    shared = [lens_stats(fb, r, 3, scratch=scratch) for r in (a, b)]
    alone = [lens_stats(fb, r, 3) for r in (a, b)]
    for got, want in zip(shared, alone):
        for name in ("entropy", "top_ids", "top_probs", "last_layer", "next_token"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name


def test_the_lens_runs_under_another_default_dtype() -> None:
    """A research script may call torch.set_default_dtype(torch.float64): the lens' fp32
    buffers do not follow it."""
    import torch

    from lenscheck.lens import lens_stats_batch

    fb = make_fake_backend(n_layers=2)
    prompts = [fb.forward(fb.encode(PROMPT))[0]]
    expected = lens_stats_batch(fb, prompts, 3)[0]
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = lens_stats_batch(fb, prompts, 3)[0]
    finally:
        torch.set_default_dtype(before)
    assert torch.equal(got.entropy, expected.entropy) and got.next_token.dtype == torch.float32


@pytest.mark.parametrize(
    ("rows", "limit", "chunk"),
    [
        (496, 341, 248),
        (558, 341, 279),
        (341, 341, 341),
        (342, 341, 171),
        (10, 341, 10),
        (1, 1, 1),
        (0, 5, 1),
        (7, 1, 1),
    ],
)
def test_even_chunk_splits_rows_into_as_few_equal_chunks_as_fit(
    rows: int, limit: int, chunk: int
) -> None:
    """The embedded model's suite16 prompts (496 and 558 rows, 341 rows per 16 Mi logits)
    go in two equal chunks, not 341 + 155: each chunk streams all of W_U."""
    from lenscheck.lens.stats import even_chunk

    assert even_chunk(rows, limit) == chunk


@settings(deadline=None)
@given(rows=st.integers(1, 5000), limit=st.integers(1, 800))
def test_even_chunk_never_exceeds_the_limit_nor_adds_a_chunk(rows: int, limit: int) -> None:
    from lenscheck.lens.stats import even_chunk

    chunk = even_chunk(rows, limit)
    fewest = -(-rows // limit)
    assert 1 <= chunk <= limit and -(-rows // chunk) == fewest
    assert rows - (fewest - 1) * chunk > chunk - fewest  # the last one short by < the count


@pytest.mark.parametrize("rows_per_chunk", [1, 5, 13, 14])
def test_chunked_unembedding_equals_one_chunk(
    monkeypatch: pytest.MonkeyPatch, rows_per_chunk: int
) -> None:
    """Chunk boundaries anywhere (inside a layer, at the last layer's first row, one row per
    chunk) give the same statistics, kept next-token rows and last-layer logits as one chunk."""
    import torch

    from lenscheck.lens import stats as lens_mod

    fb = make_fake_backend(n_layers=3)
    prompts = [fb.forward(fb.encode(text))[0] for text in (PROMPT, PROBES[0])]
    whole = lens_mod.lens_stats_batch(fb, prompts, 3)
    monkeypatch.setattr(lens_mod, "_CHUNK_LOGITS", rows_per_chunk * fb.facts.d_vocab)
    chunked = lens_mod.lens_stats_batch(fb, prompts, 3)
    for one, other in zip(whole, chunked):
        for field in ("entropy", "top_ids", "top_probs", "last_layer", "next_token"):
            torch.testing.assert_close(getattr(other, field), getattr(one, field), msg=field)


# Rows per chunk: one (tail-only chunks), a boundary inside the tail, all rows in one.
@pytest.mark.parametrize("rows_per_chunk", [1, 5, 13, 40, 10_000])
def test_tail_rows_ride_in_the_lens_chunks_and_change_nothing_else(
    monkeypatch: pytest.MonkeyPatch, rows_per_chunk: int
) -> None:
    """``tail`` rows are read out through the lens' readout in its own chunks (no extra
    unembedding call while they fit), their logits kept unreduced; the prompts'
    statistics are those of a run without them."""
    import torch

    from lenscheck.lens import stats as lens_mod

    fb = make_fake_backend(n_layers=3)
    prompts = [fb.forward(fb.encode(text))[0] for text in (PROMPT, PROBES[0])]
    tail = torch.randn(7, fb.facts.d_model, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(lens_mod, "_CHUNK_LOGITS", rows_per_chunk * fb.facts.d_vocab)
    alone = lens_mod.lens_stats_batch(fb, prompts, 3)
    calls: list[int] = []
    unembed = fb.unembed
    fb.unembed = lambda part, **kw: calls.append(part.shape[0]) or unembed(part, **kw)  # type: ignore[assignment]
    got = lens_mod.lens_stats_batch(fb, prompts, 3, tail=tail)
    rows = 4 * sum(p[0].shape[0] for p in prompts) + len(tail)
    assert sum(calls) == rows and len(calls) == -(-rows // rows_per_chunk)
    assert got[0].tail is not None and alone[0].tail is None and got[1].tail is None
    torch.testing.assert_close(got[0].tail, unembed(tail, fp32=True), rtol=1e-6, atol=1e-5)
    for one, other in zip(alone, got):
        for field in ("entropy", "top_ids", "top_probs", "last_layer", "next_token"):
            torch.testing.assert_close(getattr(other, field), getattr(one, field), msg=field)


@pytest.mark.parametrize(("weight_dtype", "merged"), [(None, True), ("bfloat16", False)])
def test_the_decoding_points_ride_in_the_logit_lens_chunks_only_in_float32(
    monkeypatch: pytest.MonkeyPatch, weight_dtype: str | None, merged: bool
) -> None:
    """An fp32 logit lens reads the other decoding points' rows in its own chunks (no fp32
    unembedding of its own); a half-precision one leaves them to point_logits, which
    unembeds them in fp32. Either way the run's files hold the same values as with the
    points unembedded apart."""
    import torch

    from lenscheck.backends.base import Unembedder
    from lenscheck.lens import pipeline, run_lens

    dtype = None if weight_dtype is None else getattr(torch, weight_dtype)
    fb = make_fake_backend(n_layers=3, seed=37, weight_dtype=dtype, promote=dtype is None)
    cfg = _lens_cfg(test_prompts=(), preset="standard")
    fp32_calls: list[int] = []
    call = Unembedder.__call__

    def spy(self: Any, part: Any, **kw: Any) -> Any:
        if kw.get("fp32"):
            fp32_calls.append(part.shape[0])
        return call(self, part, **kw)

    monkeypatch.setattr(Unembedder, "__call__", spy)
    got = run_lens(fb, cfg)
    assert fp32_calls == ([] if merged else [2 * (fb.facts.num_layers + 1)])
    monkeypatch.setattr(pipeline, "_reads_points", lambda *a: False)
    apart = run_lens(fb, cfg)
    _assert_close_tree(got.diagnostics["decoding_ablation"], apart.diagnostics["decoding_ablation"])
    assert [r["metrics"] for r in got.pure_records]
    _assert_close_tree(
        [r["metrics"] for r in got.pure_records], [r["metrics"] for r in apart.pure_records]
    )
    assert got.extended is not None and apart.extended is not None
    _assert_close_tree(got.extended.rawlens, apart.extended.rawlens)


def _assert_close_tree(got: Any, want: Any, where: str = "") -> None:
    """Equal nested dicts and lists; floats within 1e-5 (fp32 rounding of a regrouped sum)."""
    assert type(got) is type(want), where
    if isinstance(got, dict):
        assert list(got) == list(want), where
        for key in got:
            _assert_close_tree(got[key], want[key], f"{where}.{key}")
    elif isinstance(got, list):
        assert len(got) == len(want), where
        for n, (a, b) in enumerate(zip(got, want)):
            _assert_close_tree(a, b, f"{where}[{n}]")
    elif isinstance(got, float):
        assert got == pytest.approx(want, abs=1e-5, nan_ok=True), where
    else:
        assert got == want, where


@settings(deadline=None)
@given(
    logits=finite_logits(batch_shape=(3,), max_vocab=64),
    k=st.integers(1, 70),
    masked=st.integers(0, 3),
)
def test_one_softmax_gives_the_top_k_and_entropy_each_would_alone(
    logits: Any, k: int, masked: int
) -> None:
    """softmax_stats (the ablation, the probes, the temperatures, the final prediction)
    shares one softmax between the top-k and the entropy: the same bits as topk_probs and
    the entropy computed alone (lenscheck's formula, or the original's: entropy_bits),
    banned (-inf) ids included."""
    import torch

    from lenscheck.lens.probes import softmax_stats
    from lenscheck.numerics import entropy_bits, entropy_from_top1, topk_probs

    logits[:, :masked] = float("-inf")
    logits[:, -1] = 0.0  # every row keeps an id the mask spares
    dist, top, entropy = softmax_stats(logits, k)
    alone = topk_probs(logits, k)
    assert torch.equal(dist, torch.softmax(logits.float(), dim=-1))
    assert torch.equal(top.ids, alone.ids) and torch.equal(top.probs, alone.probs)
    assert torch.equal(entropy, entropy_from_top1(dist, logits, alone.ids))
    assert torch.equal(softmax_stats(logits, k, original=True)[2], entropy_bits(logits))


@pytest.mark.parametrize(
    ("bad", "message"),
    [(float("nan"), "contains NaN"), (float("inf"), r"contains \+inf")],
)
def test_one_softmax_refuses_what_entropy_bits_refuses(bad: float, message: str) -> None:
    import torch

    from lenscheck.lens.probes import softmax_stats

    logits = torch.zeros(2, 5)
    logits[1, 3] = bad
    with pytest.raises(ValueError, match=message):
        softmax_stats(logits, 2)
    with pytest.raises(ValueError, match="every value is -inf"):
        softmax_stats(torch.full((1, 4), float("-inf")), 2)
