"""The tuned lens against tuned-lens 0.2.0 itself, without it installed.

tests/data/tuned/<family>/ holds checkpoints written by tuned-lens' own ``TunedLens.save``
(seeded random translators) and, for the families tuned-lens can decode itself (GPT-2,
Llama, GPT-NeoX), ``expected.json``: what tuned-lens' forward gave on the default prompt at
every layer and position when the fixture was written (tests/data/tuned/make_fixtures.py).
Here lenscheck reads the same folders and must give the same numbers; `nox -s tunedlens`
checks the same against a live tuned-lens on the embedded model. Also: every refusal of a
checkpoint that is missing, corrupt or made for another model, and the runner's files.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _lens_fixtures import make_fake_backend, single_thread
from test_lenses import write_checkpoint

from lenscheck.config import LensConfig
from lenscheck.lenses import LensSpecError, TunedLens, open_lenses
from lenscheck.lenses.tuned import read_checkpoint, same_model, unembed_hash

FIXTURES = Path(__file__).parent / "data" / "tuned"
NATIVE = ("gpt2", "llama", "neox")  # tuned-lens 0.2.0 has a forward for these
FAMILIES = (*NATIVE, "gemma3", "opt-postnorm")
#: The brief of the check (issue 25): every top-1 the same, |ΔH| <= 1e-5 bits in fp32.
ENTROPY_BITS = 1e-5


@functools.cache
def _backend(family: str) -> Any:
    from lenscheck.runner import load_model

    _, backend = load_model(f"synthetic-{family}", LensConfig(device="cpu", dtype="float32"))
    return backend


def _expected(family: str) -> dict[str, Any]:
    return json.loads((FIXTURES / family / "expected.json").read_text(encoding="utf-8"))


def _bits(logits: Any) -> float:
    """Entropy in bits in float64, as make_fixtures.py computed the expected values."""
    import torch

    log_p = torch.log_softmax(logits.double(), dim=-1)
    return float(-(log_p.exp() * log_p).sum() / math.log(2))


def _max_disagreement(
    lens: Any, residuals: list[Any], cells: list[list[dict[str, Any]]]
) -> dict[str, float]:
    """Largest |ΔH| (bits), |Δ logit| at tuned-lens' top-5, |Δ logsumexp|, and how many
    cells' top-1 differ, of ``lens`` against tuned-lens' recorded cells."""
    import torch

    with torch.no_grad():
        logits = lens.decode_all(residuals)
    worst = {"entropy": 0.0, "logit": 0.0, "logsumexp": 0.0, "top1_differs": 0.0}
    for layer, row in enumerate(cells):
        for pos, cell in enumerate(row):
            got = logits[layer, pos]
            worst["entropy"] = max(worst["entropy"], abs(_bits(got) - cell["entropy_bits"]))
            at = got[cell["top_ids"]].double() - torch.tensor(cell["top_logits"]).double()
            worst["logit"] = max(worst["logit"], float(at.abs().max()))
            lse = float(torch.logsumexp(got.double(), dim=-1)) - cell["logsumexp"]
            worst["logsumexp"] = max(worst["logsumexp"], abs(lse))
            worst["top1_differs"] += int(got.argmax()) != cell["top_ids"][0]
    return worst


def _bound(family: str, folder: Path | None = None) -> Any:
    backend = _backend(family)
    (opened,) = open_lenses([f"tuned={folder or FIXTURES / family}"])
    return opened.bind(backend, LensConfig(device="cpu"))


# --------------------------------------------------------------------------- the fixtures


@pytest.mark.parametrize("family", FAMILIES)
def test_each_fixture_is_a_tuned_lens_checkpoint(family: str) -> None:
    ckpt = read_checkpoint(FIXTURES / family)
    assert ckpt.config == {
        "base_model_name_or_path": f"synthetic-{family}",
        "d_model": 64,
        "num_hidden_layers": 3,
        "bias": True,
        "base_model_revision": None,
        "unembed_hash": ckpt.config["unembed_hash"],
        "lens_type": "linear_tuned_lens",
    }
    assert len(ckpt.config["unembed_hash"]) == 64
    assert tuple(ckpt.weights.shape) == (3, 64, 64) and ckpt.biases is not None
    assert tuple(ckpt.biases.shape) == (3, 64)
    # Not tuned-lens' zero init: every translator's weight and bias is its own.
    assert all(float(w.abs().min()) > 0 for w in ckpt.weights.flatten(1))
    assert all(float(b.abs().max()) > 0 for b in ckpt.biases)
    assert float((ckpt.weights[1] - ckpt.weights[0]).abs().max()) > 0


def test_the_digest_is_of_the_values_not_the_file(tmp_path: Path) -> None:
    import torch

    state = torch.load(FIXTURES / "llama" / "params.pt", weights_only=True)
    shutil.copy(FIXTURES / "llama" / "config.json", tmp_path / "config.json")
    torch.save(state, tmp_path / "renamed.pt")
    (tmp_path / "renamed.pt").rename(tmp_path / "params.pt")
    assert (tmp_path / "params.pt").read_bytes() != (FIXTURES / "llama" / "params.pt").read_bytes()
    assert read_checkpoint(tmp_path).digest == read_checkpoint(FIXTURES / "llama").digest
    state["2.bias"][5] += 1e-3
    torch.save(state, tmp_path / "params.pt")
    assert read_checkpoint(tmp_path).digest != read_checkpoint(FIXTURES / "llama").digest


@pytest.mark.parametrize("family", NATIVE)
def test_lenscheck_agrees_with_tuned_lens_own_forward(family: str) -> None:
    """Every cell of the default prompt: the same top-1 and top-5 logits, |ΔH| <= 1e-5 bits,
    as tuned-lens' TunedLens.forward gave when the fixture was written (the last layer: the
    model's own logits)."""
    expected = _expected(family)
    lens, backend = _bound(family), _backend(family)
    ids = backend.codec.encode(DEFAULT_PROMPT, "always")  # as the fixtures were written
    assert ids == expected["input_ids"]
    with single_thread():
        worst = _max_disagreement(lens, backend.run(ids).residuals, expected["cells"])
    assert worst["top1_differs"] == 0, worst
    assert worst["entropy"] <= ENTROPY_BITS, worst
    assert worst["logit"] <= 1e-4 and worst["logsumexp"] <= 1e-4, worst


@pytest.mark.parametrize(
    ("fault", "break_it"),
    [
        ("neighbouring layer", lambda lens: setattr(lens, "_wt", lens._wt.roll(1, 0))),
        ("bias dropped", lambda lens: setattr(lens, "_bias", None)),
        ("translator transposed", lambda lens: setattr(lens, "_wt", lens._wt.transpose(1, 2))),
    ],
)
def test_the_agreement_check_catches_a_misapplied_translator(
    fault: str, break_it: Callable[[Any], None]
) -> None:
    """The fixtures can fail: a translator at the neighbouring layer, without its bias, or
    transposed moves the entropy by far more than the tolerance."""
    expected = _expected("llama")
    lens, backend = _bound("llama"), _backend("llama")
    break_it(lens)
    worst = _max_disagreement(lens, backend.run(expected["input_ids"]).residuals, expected["cells"])
    assert worst["entropy"] > 1000 * ENTROPY_BITS, (fault, worst)


@pytest.mark.parametrize("family", NATIVE)
def test_the_records_are_tuned_lens_numbers(family: str) -> None:
    """The pipeline's CSV rows through the tuned lens: each cell's top-1 is tuned-lens' and
    its (fp32) entropy within fp32 summation's reach of tuned-lens' float64 one."""
    from lenscheck.lens import run_suite
    from lenscheck.suites import DEFAULT_SUITE

    expected, backend = _expected(family), _backend(family)
    # BOS first, as the fixtures were written (tests/data/tuned/make_fixtures.py).
    cfg = LensConfig(device="cpu", bos="always", lenses=(f"tuned={FIXTURES / family}",))
    with single_thread():
        result = run_suite(backend, DEFAULT_SUITE, cfg)["capital-de"]
    assert result.lens == "tuned" and result.input_ids == expected["input_ids"]
    width = len(result.input_ids)
    for record in result.records:
        cell = expected["cells"][record["layer"]][record["pos"]]
        assert record["topk"][0][0] == backend.decode(cell["top_ids"][0]), record
        assert record["entropy"] == pytest.approx(cell["entropy_bits"], abs=1e-4), record
    assert len(result.records) == len(expected["cells"]) * width
    facts = result.json_data["diagnostics"]["lens"]
    assert facts["config"]["base_model_name_or_path"] == f"synthetic-{family}"
    assert facts["translators_sha256"] == read_checkpoint(FIXTURES / family).digest


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_translators_are_the_final_logit_lens_on_every_family(
    tmp_path: Path, family: str
) -> None:
    """tuned-lens' own init, on each synthetic family: the final-norm logit lens bit for bit."""
    import torch

    from lenscheck.lens import run_lenses
    from lenscheck.suites import PromptSuite

    backend = _backend(family)
    folder = write_checkpoint(tmp_path / "zero", backend, seed=None)
    suite = PromptSuite.one_off(DEFAULT_PROMPT, "Berlin")
    cfg = LensConfig(device="cpu", decode_norm="final", lenses=("logit", f"tuned={folder}"))
    with single_thread():
        by_lens = run_lenses(backend, suite, cfg)
    logit, tuned = by_lens["logit"]["custom"], by_lens["tuned"]["custom"]
    assert tuned.records == logit.records and tuned.pure_records == logit.pure_records
    assert torch.equal(tuned.entropies, logit.entropies)


@pytest.mark.parametrize("family", NATIVE)
def test_the_unembedding_hash_is_tuned_lens_own(
    family: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorded = read_checkpoint(FIXTURES / family).config["unembed_hash"]
    assert unembed_hash(_backend(family).unembed.weight) == recorded
    with caplog.at_level(logging.WARNING, logger="lenscheck.lenses.tuned"):
        _bound(family)
    assert caplog.records == []


def test_another_unembedding_is_warned_about_as_tuned_lens_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fb = make_fake_backend()
    mine = unembed_hash(fb.unembed.weight)
    ok = write_checkpoint(tmp_path / "ok", fb, unembed_hash=mine)
    other = write_checkpoint(tmp_path / "other", fb, unembed_hash="0" * 64)
    with caplog.at_level(logging.WARNING, logger="lenscheck.lenses.tuned"):
        TunedLens.bind(fb, LensConfig(), str(ok), None)
        assert caplog.records == []
        TunedLens.bind(fb, LensConfig(), str(other), None)
    assert [r.getMessage() for r in caplog.records] == [
        f"tuned lens {other}: the unembedding's hash differs from the one it was tuned with "
        "(tuned-lens' unembed_hash); it may come from another checkpoint"
    ]


# --------------------------------------------------------------------------- refusals

DEFAULT_PROMPT = "Give the city name only, plain text. The capital of Germany is called simply"


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "lens"
    shutil.copytree(FIXTURES / "llama", folder)
    (folder / "expected.json").unlink()
    return folder


def _edit_config(folder: Path, **changes: Any) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(changes)
    path.write_text(json.dumps({k: v for k, v in config.items() if v != "<drop>"}), "utf-8")


def _edit_params(folder: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    import torch

    state = torch.load(folder / "params.pt", weights_only=True)
    torch.save(edit(state), folder / "params.pt")


def _drop(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda s: {k: v for k, v in s.items() if k != key}


def _nan(s: dict[str, Any]) -> dict[str, Any]:
    s["1.weight"][3, 3] = float("nan")
    return s


BROKEN: dict[str, tuple[Callable[[Path], Any], str]] = {
    "no folder": (
        lambda f: shutil.rmtree(f),
        r"the folder does not exist; a tuned-lens checkpoint",
    ),
    "a file": (
        lambda f: shutil.rmtree(f) or f.write_text("x"),
        r"the folder is a file; a tuned-lens checkpoint folder holds config.json and params.pt",
    ),
    "no config": (lambda f: (f / "config.json").unlink(), r"no config.json in the folder"),
    "config not json": (
        lambda f: (f / "config.json").write_text("{d_model: 64"),
        r"config.json is not readable JSON \(Expecting property name",
    ),
    "config a list": (
        lambda f: (f / "config.json").write_text("[]"),
        r"config.json holds list, expected an object",
    ),
    "no d_model": (
        lambda f: _edit_config(f, d_model="<drop>"),
        r"config.json needs d_model \(int\), got None",
    ),
    "d_model a string": (
        lambda f: _edit_config(f, d_model="64"),
        r"config.json needs d_model \(int\), got '64'",
    ),
    "zero layers": (
        lambda f: _edit_config(f, num_hidden_layers=0),
        r"num_hidden_layers must be >= 1, got 0",
    ),
    "another lens type": (
        lambda f: _edit_config(f, lens_type="logit_prism"),
        r"lens_type is 'logit_prism'; lenscheck reads tuned-lens' 'linear_tuned_lens'",
    ),
    "bias not a bool": (lambda f: _edit_config(f, bias="yes"), r"config.json: bias must be"),
    "no params": (lambda f: (f / "params.pt").unlink(), r"no params.pt in the folder"),
    "params garbage": (
        lambda f: (f / "params.pt").write_bytes(b"\x00not a torch archive"),
        r"params.pt is not a readable torch state dict \(",
    ),
    "params truncated": (
        lambda f: (f / "params.pt").write_bytes((f / "params.pt").read_bytes()[:4000]),
        r"params.pt is not a readable torch state dict \(",
    ),
    "params a tensor": (
        lambda f: _edit_params(f, lambda s: s["0.weight"]),
        r"params.pt holds Tensor, expected a state dict",
    ),
    "a translator missing": (
        lambda f: _edit_params(f, _drop("2.weight")),
        r"params.pt does not match config.json \(num_hidden_layers 3, bias True\): missing "
        r"\['2.weight'\], unexpected \[\]",
    ),
    "a bias too many": (
        lambda f: _edit_config(f, bias=False),
        r"missing \[\], unexpected \['0.bias', '1.bias', '2.bias'\]",
    ),
    "a translator too many": (
        lambda f: _edit_config(f, num_hidden_layers=2),
        r"unexpected \['2.bias', '2.weight'\]",
    ),
    "wrong shape": (
        lambda f: _edit_params(f, lambda s: {**s, "1.weight": s["1.weight"][:, :32]}),
        r"params.pt\['1.weight'\] is torch.float32 \(64, 32\), expected a float tensor of "
        r"shape \(64, 64\)",
    ),
    "integer weights": (
        lambda f: _edit_params(f, lambda s: {**s, "0.bias": s["0.bias"].long()}),
        r"params.pt\['0.bias'\] is torch.int64 \(64,\), expected a float tensor",
    ),
    "a NaN": (lambda f: _edit_params(f, _nan), r"params.pt\['1.weight'\] holds NaN or inf"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_checkpoint_is_refused_naming_what_is_wrong(tmp_path: Path, case: str) -> None:
    folder = _copy(tmp_path)
    breaks, message = BROKEN[case]
    breaks(folder)
    with pytest.raises(LensSpecError, match=rf"^tuned lens '{folder}': .*{message}"):
        open_lenses([f"tuned={folder}"])


def test_a_code_carrying_pickle_is_refused_not_run(tmp_path: Path) -> None:
    """params.pt is read with torch's weights-only unpickler: an object that would run code
    on load is refused, and its code never runs."""
    import os

    import torch

    folder = _copy(tmp_path)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> Any:
            return (os.mkdir, (str(marker),))

    torch.save({"0.weight": Evil()}, folder / "params.pt")
    with pytest.raises(LensSpecError, match=r"params\.pt is not a readable torch state dict"):
        read_checkpoint(folder)
    assert not marker.exists()


def test_unknown_config_keys_are_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _copy(tmp_path)
    _edit_config(folder, trained_on="the pile")
    with caplog.at_level(logging.WARNING, logger="lenscheck.lenses.tuned"):
        ckpt = read_checkpoint(folder)
    assert "trained_on" not in ckpt.config
    assert [r.getMessage() for r in caplog.records] == [
        f"tuned lens {folder}: ignoring config key 'trained_on'"
    ]


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (
            {"d_model": 16},
            r"its translators are for d_model 64, fake/pre_norm-layernorm has d_model 16",
        ),
        (
            {"d_model": 64, "n_layers": 2},
            r"it has translators for 3 layers, fake/pre_norm-layernorm has 2 blocks",
        ),
        (
            {"d_model": 64},
            r"it was tuned for 'synthetic-llama', this run reads 'fake/pre_norm-layernorm'. If "
            r"it is the same model under another name, set base_model_name_or_path in "
            r".*config.json to 'fake/pre_norm-layernorm'",
        ),
    ],
)
def test_a_lens_for_another_model_is_refused_naming_both(
    shape: dict[str, int], message: str
) -> None:
    fb = make_fake_backend(**shape)
    (opened,) = open_lenses([f"tuned={FIXTURES / 'llama'}"])
    with pytest.raises(LensSpecError) as exc:
        opened.bind(fb, LensConfig())
    text = str(exc.value)
    assert text.startswith(
        f"tuned lens '{FIXTURES / 'llama'}' does not fit fake/pre_norm-layernorm: "
    )
    assert text.endswith("; pass --lens tuned=PATH with a lens tuned for this model")
    assert re.search(message, text), text


@pytest.mark.parametrize(
    ("recorded", "model", "same"),
    [
        ("gpt2", "gpt2", True),
        ("gpt2", "openai-community/gpt2", True),
        ("EleutherAI/pythia-410m-deduped", "/models/Pythia-410M-deduped/", True),
        ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf", False),
        ("gpt2", "gpt2-medium", False),
        ("synthetic-llama", "synthetic-gpt2", False),
    ],
)
def test_which_recorded_names_fit_a_model(recorded: str, model: str, same: bool) -> None:
    assert same_model(recorded, model) is same


# --------------------------------------------------------------------------- the runner


def test_each_lens_writes_its_own_files_and_the_logit_files_do_not_change(
    tmp_path: Path,
) -> None:
    from lenscheck.runner import run_model

    base = LensConfig(device="cpu", heatmap=True, test_prompts=(), seed=1)
    tuned = f"tuned={FIXTURES / 'llama'}"
    with single_thread():
        alone = run_model("synthetic-llama", base, tmp_path / "alone")
        both = run_model("synthetic-llama", base.evolve(lenses=("logit", tuned)), tmp_path / "both")
    names = sorted(p.name for p in (tmp_path / "both").iterdir())
    assert names == [  # a one-off prompt (no probes): its files carry its id, custom
        "output-synthetic-llama-custom-lens-tuned.png",
        "output-synthetic-llama-custom-lens.png",
        "output-synthetic-llama-custom-milestones-tuned.csv",
        "output-synthetic-llama-custom-milestones.csv",
        "output-synthetic-llama-custom-pure-next-token-rawlens-tuned.csv",
        "output-synthetic-llama-custom-pure-next-token-rawlens.csv",
        "output-synthetic-llama-custom-pure-next-token-tuned.csv",
        "output-synthetic-llama-custom-pure-next-token.csv",
        "output-synthetic-llama-custom-records-tuned.csv",
        "output-synthetic-llama-custom-records.csv",
        "output-synthetic-llama-custom-tuned.json",
        "output-synthetic-llama-custom.json",
    ]
    for path in (tmp_path / "alone").iterdir():
        assert path.read_bytes() == (tmp_path / "both" / path.name).read_bytes(), path.name
    assert (
        list(both.lens_results) == ["logit", "tuned"] and both.results is both.lens_results["logit"]
    )
    tuned_json = both.lens_paths["tuned"]["custom"].json
    assert tuned_json.name == "output-synthetic-llama-custom-tuned.json"
    assert both.paths == both.lens_paths["logit"]
    assert both.paths["custom"].json.name == alone.paths["custom"].json.name
    data = json.loads(tuned_json.read_text("utf-8"))
    assert data["diagnostics"]["lens"]["kind"] == "tuned"
    assert data["diagnostics"]["self_test"] == {"ran": False}


def test_a_tuned_lens_alone_writes_only_its_files_and_the_residuals_once(tmp_path: Path) -> None:
    from lenscheck.runner import run_model

    cfg = LensConfig(
        device="cpu",
        heatmap=False,
        test_prompts=(),
        keep_residuals=True,
        self_test=True,
        lenses=(f"tuned={FIXTURES / 'gpt2'}",),
    )
    with single_thread():
        run = run_model("synthetic-gpt2", cfg, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "output-synthetic-gpt2-custom-milestones-tuned.csv",
        "output-synthetic-gpt2-custom-pure-next-token-rawlens-tuned.csv",
        "output-synthetic-gpt2-custom-pure-next-token-tuned.csv",
        "output-synthetic-gpt2-custom-records-tuned.csv",
        "output-synthetic-gpt2-custom-residuals.safetensors",
        "output-synthetic-gpt2-custom-tuned.json",
    ]
    assert run.result.lens == "tuned" and run.result.diagnostics["self_test"]["passed"] is True


def test_a_bad_lens_is_refused_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lenscheck.runner
    from lenscheck.runner import run_model

    def no_load(*_: Any, **__: Any) -> Any:
        raise AssertionError("the model must not load for a missing lens")

    monkeypatch.setattr(lenscheck.runner, "load_model", no_load)
    cfg = LensConfig(device="cpu", lenses=("logit", f"tuned={tmp_path / 'missing'}"))
    with pytest.raises(LensSpecError, match="the folder does not exist"):
        run_model("synthetic-llama", cfg, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_lens_for_another_model_is_refused_before_any_output(tmp_path: Path) -> None:
    from lenscheck.runner import run_model

    cfg = LensConfig(device="cpu", lenses=("logit", f"tuned={FIXTURES / 'gpt2'}"))
    with pytest.raises(LensSpecError, match="it was tuned for 'synthetic-gpt2', this run reads"):
        run_model("synthetic-llama", cfg, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_file_names_two_prompts_and_lenses_would_share_are_refused(tmp_path: Path) -> None:
    from lenscheck.runner import run_model
    from lenscheck.suites import PromptCase, PromptSuite

    suite = PromptSuite(
        name="clash",
        cases=(
            PromptCase("a", DEFAULT_PROMPT, "Berlin"),
            PromptCase("a-tuned", DEFAULT_PROMPT, "Berlin"),
        ),
        source="clash.toml",
    )
    cfg = LensConfig(device="cpu", suite=suite, lenses=("logit", f"tuned={FIXTURES / 'llama'}"))
    with pytest.raises(
        ValueError,
        match=(
            r"^output-synthetic-llama-a-tuned.json would be written for prompt 'a-tuned' under "
            r"the logit lens and for prompt 'a' under the tuned lens; rename one of the prompt ids"
        ),
    ):
        run_model("synthetic-llama", cfg, tmp_path)
    assert list(tmp_path.iterdir()) == []
