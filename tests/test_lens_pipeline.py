"""The lens pipeline end to end on the embedded model, and unit tests on a model-free backend.

Part 1 (``slow``): one embedded SmolLM2 run (shared through ``_lens_fixtures.embedded_run``)
checked against the behaviour spec (DESIGN.md section 3) and the published files' shape.
Part 2: :class:`_lens_fixtures.FakeBackend`, a tiny torch model with real norm modules,
pins which norm the lens applies where, the last-layer identity, the unembedding (softcap,
fp32 promotion) and the error paths.
"""

from __future__ import annotations

import json
import logging
import math
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
    from lenscheck.config import LensConfig

    return LensConfig(**{"test_prompts": SHORT_PROBES, **changes})


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


@pytest.mark.parametrize(("layer", "value", "kind"), [(2, math.nan, "NaN"), (0, math.inf, "inf")])
def test_non_finite_residual_raises_naming_the_layer(layer: int, value: float, kind: str) -> None:
    from lenscheck.lens import NonFiniteResidualError

    fb = make_fake_backend()

    def corrupt(residuals: list[Any]) -> None:
        residuals[layer][3, 1] = value

    fb.corrupt = corrupt
    with pytest.raises(NonFiniteResidualError, match=rf"layer {layer} contains {kind}"):
        _run(fb)
    assert issubclass(NonFiniteResidualError, ArithmeticError)  # the CLI's exit-2 family


def test_prompt_longer_than_context_raises() -> None:
    fb = make_fake_backend(n_ctx=5)
    # BOS + 4 words == n_ctx: accepted.
    ok = _run(fb, prompt="The capital of Germany")
    assert len(ok.input_ids) == 5
    with pytest.raises(ValueError, match=r"6 tokens long .* context of 5 tokens"):
        _run(fb, prompt="The capital of Germany is")


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
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'Ber lin'" in warnings[0].getMessage()
    assert "2 pieces" in warnings[0].getMessage()
    assert result.diagnostics["ground_truth_single_token"] is False
    assert result.diagnostics["ground_truth_token_ids"] == [17, 18]  # " Ber", " lin"
    assert result.json_data["prompt"]["ground_truth"] == "Ber lin"


def test_fake_run_builds_every_record() -> None:
    """The fake model goes through the same record builders: shapes and k per position."""
    fb = make_fake_backend(n_layers=3)
    result = _run(fb)
    n_tok = len(result.input_ids)
    assert n_tok == 15  # BOS + 14 words
    assert len(result.records) == 4 * n_tok and len(result.pure_records) == 4
    ks = {r["pos"]: len(r["topk"]) for r in result.records if r["layer"] == 0}
    tokens = [fb.token_text(i) for i in result.input_ids]
    verbose = _expected_verbose(tokens)
    assert ks == {p: (20 if p in verbose else 5) for p in range(n_tok)}
    assert result.diagnostics["tokenization"]["n_tokens"] == n_tok


def test_probe_prompts_each_get_their_own_distribution() -> None:
    """Probe i's entropy and top-k come from prompt i's logits, in the configured order."""
    from lenscheck.lens import _distribution

    fb = make_fake_backend(n_layers=2)
    prompts = ("Paris is in", "one two three four five", "The")
    result = _run(fb, test_prompts=prompts)
    probes = result.json_data["test_prompts"]
    assert [p["prompt"] for p in probes] == list(prompts)
    for probe, prompt in zip(probes, prompts, strict=True):
        ent, topk = _distribution(fb, fb.forward(fb.encode(prompt))[1][-1], 10)
        assert probe["entropy"] == ent and probe["topk"] == topk


def test_no_probe_prompts_gives_an_empty_list() -> None:
    result = _run(make_fake_backend(n_layers=2), test_prompts=())
    assert result.json_data["test_prompts"] == []
    assert len(result.json_data["temperature_exploration"]) > 0


def test_backend_returning_the_wrong_number_of_probe_rows_is_an_error() -> None:
    fb = make_fake_backend(n_layers=2)
    full = fb.next_token_logits_batch
    fb.next_token_logits_batch = lambda batch: full(batch)[:-1]  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match=r"returned 2 next-token distributions for 3 probe"):
        _run(fb, test_prompts=("a", "b", "c"))
