"""The ``lenscheck`` console script, in process (``lenscheck.cli.main``) and as a subprocess.

Everything runs offline on the tiny synthetic models (3 layers); the embedded model appears
only through the shared, memoized run (no second lens run).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _lens_fixtures import EMBEDDED_FILE_NAME, SINGLE_THREAD_ENV, embedded_run, synthetic_run

from lenscheck.cli import _config, build_parser, main

#: One torch thread for this module (see _lens_fixtures.single_thread).
pytestmark = pytest.mark.usefixtures("torch_single_thread")

LLAMA = "synthetic-llama"
LLAMA_FILES = [
    f"output-{LLAMA}-lens.png",
    f"output-{LLAMA}-milestones.csv",
    f"output-{LLAMA}-pure-next-token-rawlens.csv",
    f"output-{LLAMA}-pure-next-token.csv",
    f"output-{LLAMA}-records.csv",
    f"output-{LLAMA}.json",
]


@pytest.fixture(autouse=True)
def _wide_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide rich tables (model names never folded) and no hub access."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("output-"))


def _leftovers(folder: Path) -> list[str]:
    """Staged part files or probes that a run must never leave behind."""
    return sorted(
        p.name for p in folder.rglob("*") if p.name.endswith(".part") or "probe" in p.name
    )


def _errors(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def _llama(out_dir: Path, *extra: str) -> int:
    return main(["run", LLAMA, "--device", "cpu", "--out-dir", str(out_dir), *extra])


# ------------------------------------------------------------------------------ happy path


def test_run_writes_the_four_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lenscheck.schema import validate_csv

    out = tmp_path / "out"
    assert _llama(out) == 0
    assert _outputs(out) == LLAMA_FILES
    assert _leftovers(out) == []
    data = json.loads((out / f"output-{LLAMA}.json").read_text(encoding="utf-8"))
    assert data["diagnostics"]["model"] == LLAMA
    assert data["model_stats"]["num_layers"] == 3
    assert validate_csv(out / f"output-{LLAMA}-records.csv") == []
    assert validate_csv(out / f"output-{LLAMA}-pure-next-token.csv") == []
    assert (out / f"output-{LLAMA}-lens.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    table = capsys.readouterr().out
    assert LLAMA in table and "ok" in table and "L_semantic" in table


def test_python_dash_m_smoke(tmp_path: Path) -> None:
    env = {**os.environ, **SINGLE_THREAD_ENV, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lenscheck",
            "run",
            "synthetic-gpt2",
            "--device",
            "cpu",
            "--out-dir",
            str(tmp_path),
            "--no-heatmap",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _outputs(tmp_path) == [
        "output-synthetic-gpt2-milestones.csv",
        "output-synthetic-gpt2-pure-next-token-rawlens.csv",
        "output-synthetic-gpt2-pure-next-token.csv",
        "output-synthetic-gpt2-records.csv",
        "output-synthetic-gpt2.json",
    ]
    assert "synthetic-gpt2" in proc.stdout and "ok" in proc.stdout


@pytest.mark.slow
def test_no_model_means_embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No MODEL: the spec given to the loader is ``embedded``. The load and the lens are
    served from the shared embedded run, the real runner writes the real files."""
    import lenscheck.lens
    import lenscheck.runner

    shared = embedded_run("transformers", preset="standard")  # the CLI's default preset
    asked: list[str] = []

    def fake_load(spec: str, cfg: Any, **_: Any) -> Any:
        asked.append(spec)
        return shared.resolved, shared.backend

    monkeypatch.setattr(lenscheck.runner, "load_model", fake_load)
    monkeypatch.setattr(
        lenscheck.lens,
        "run_lenses",
        lambda backend, suite, cfg, lenses: {"logit": {"capital-de": shared.result}},
    )
    assert main(["run", "--device", "cpu", "--out-dir", str(tmp_path), "--no-heatmap"]) == 0
    assert asked == ["embedded"]
    assert _outputs(tmp_path) == [
        f"output-{EMBEDDED_FILE_NAME}-milestones.csv",
        f"output-{EMBEDDED_FILE_NAME}-pure-next-token-rawlens.csv",
        f"output-{EMBEDDED_FILE_NAME}-pure-next-token.csv",
        f"output-{EMBEDDED_FILE_NAME}-records.csv",
        f"output-{EMBEDDED_FILE_NAME}.json",
    ]
    table = capsys.readouterr().out
    assert "embedded" in table and "Berlin" in table
    assert build_parser().parse_args(["run"]).models == []


# --------------------------------------------------------------------------- bad arguments


def test_copy_threshold_out_of_range_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", LLAMA, "--copy-threshold", "1.5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--copy-threshold" in err and "[0, 1]" in err and "1.5" in err


def _no_load(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import lenscheck.runner

    calls: list[str] = []

    def refuse(spec: str, *_: Any, **__: Any) -> Any:
        calls.append(spec)
        raise AssertionError("the model must not load before the out-dir is checked")

    monkeypatch.setattr(lenscheck.runner, "load_model", refuse)
    return calls


def test_out_dir_under_a_regular_file_fails_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = _no_load(monkeypatch)
    blocker = tmp_path / "somefile"
    blocker.write_text("not a directory")
    assert _llama(blocker / "sub") == 2
    assert calls == []
    message = _errors(caplog)
    assert "--out-dir" in message and "not writable" in message and "somefile" in message
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions"
)
def test_read_only_out_dir_fails_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = _no_load(monkeypatch)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert _llama(ro) == 2
    finally:
        ro.chmod(0o700)
    assert calls == [] and "--out-dir" in _errors(caplog)


def test_unknown_model_offline_names_the_alternatives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from lenscheck.models import SYNTHETIC_ALIASES

    code = main(
        ["run", "no-such-org/no-such-model-xyz", "--device", "cpu", "--out-dir", str(tmp_path)]
    )
    assert code == 2
    message = _errors(caplog)
    assert "no-such-org/no-such-model-xyz" in message
    assert "offline" in message or "unreachable" in message
    assert "embedded" in message
    for alias in SYNTHETIC_ALIASES:
        assert alias in message
    assert _outputs(tmp_path) == []


# ------------------------------------------------------------------------------- options


def test_self_test_runs_and_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lenscheck.selftest

    real = lenscheck.selftest.run_self_test
    seen: list[int] = []
    reports: list[dict[str, Any]] = []

    def spy(backend: Any, result: Any, residuals: list[Any]) -> dict[str, Any]:
        seen.append(len(residuals))
        reports.append(real(backend, result, residuals))
        return reports[-1]

    monkeypatch.setattr(lenscheck.selftest, "run_self_test", spy)
    assert _llama(tmp_path, "--self-test", "--no-heatmap") == 0
    assert seen == [4]  # embeddings + 3 blocks
    assert len(_outputs(tmp_path)) == 5
    # --self-test keeps the residuals only for itself: no residual file without the flag.
    assert not any(n.endswith(".safetensors") for n in _outputs(tmp_path))
    # The JSON records that it ran, that it passed, and its numbers.
    diag = json.loads((tmp_path / f"output-{LLAMA}.json").read_text(encoding="utf-8"))[
        "diagnostics"
    ]
    record = diag["self_test"]
    assert record == {"ran": True, "passed": True, **reports[0]}
    assert list(record) == [
        "ran",
        "passed",
        "tolerance_bits",
        "norm_scaling_kl_bits",
        "last_layer_kl_bits",
        "top1_agree",
    ]
    assert record["tolerance_bits"] == 5e-6  # fp32 (the calibrated kl_consistency)
    assert sorted(record["norm_scaling_kl_bits"]) == ["0", "2", "3"]  # first, middle, last
    assert all(0.0 <= kl < 1e-6 for kl in record["norm_scaling_kl_bits"].values())
    assert record["last_layer_kl_bits"] == diag["last_layer_consistency"]["kl_bits_max"]
    assert record["top1_agree"] is True
    # Without --self-test the JSON says it did not run.
    assert _llama(tmp_path / "plain", "--no-heatmap") == 0
    plain = json.loads((tmp_path / "plain" / f"output-{LLAMA}.json").read_text(encoding="utf-8"))
    assert plain["diagnostics"]["self_test"] == {"ran": False}


def test_keep_residuals_writes_safetensors(tmp_path: Path) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    assert _llama(tmp_path, "--keep-residuals", "--no-heatmap") == 0
    path = tmp_path / f"output-{LLAMA}-residuals.safetensors"
    assert path.is_file()
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    assert path.read_bytes()[8:9] == b"{" and header_len > 0  # safetensors, not a pickle
    tensors = load_file(str(path))
    ref = synthetic_run(LLAMA, preset="standard")  # as the CLI run above
    n_layers = ref.result.json_data["model_stats"]["num_layers"]
    assert sorted(tensors) == [f"layer_{i:02d}" for i in range(n_layers + 1)]
    capture = ref.backend.run(ref.result.input_ids)
    for i, resid in enumerate(capture.residuals):
        assert tensors[f"layer_{i:02d}"].shape == (16, 64)  # the tokenizer adds no BOS
        torch.testing.assert_close(tensors[f"layer_{i:02d}"], resid, rtol=0, atol=0)
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata() == {"format": "lenscheck-residuals", "layers": str(n_layers + 1)}


def test_several_models_run_one_subprocess_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each model gets its own ``python -m lenscheck run --in-process ...`` command; the
    recorder executes that command line in process so the files are real."""
    import lenscheck.cli

    commands: list[list[str]] = []
    real_run = subprocess.run

    def record(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        if cmd[1:3] != ["-m", "lenscheck"]:
            return real_run(cmd, *args, **kwargs)
        commands.append(list(cmd))
        return subprocess.CompletedProcess(cmd, main(cmd[3:]))

    monkeypatch.setattr(lenscheck.cli.subprocess, "run", record)
    code = main(
        [
            "run",
            LLAMA,
            "synthetic-gpt2",
            "--device",
            "cpu",
            "--out-dir",
            str(tmp_path),
            "--no-heatmap",
            "--copy-threshold",
            "0.8",
        ]
    )
    assert code == 0
    assert len(commands) == 2
    for cmd, model in zip(commands, [LLAMA, "synthetic-gpt2"]):
        assert cmd[:5] == [sys.executable, "-m", "lenscheck", "run", "--in-process"]
        assert cmd[-1] == model
        assert cmd[cmd.index("--out-dir") + 1] == str(tmp_path)
        assert cmd[cmd.index("--device") + 1] == "cpu"
        assert cmd[cmd.index("--copy-threshold") + 1] == "0.8"
        assert "--no-heatmap" in cmd and "--trust-remote-code" not in cmd
    assert _outputs(tmp_path) == sorted(
        f"output-{m}{suffix}"
        for m in (LLAMA, "synthetic-gpt2")
        for suffix in (
            "-milestones.csv",
            "-pure-next-token-rawlens.csv",
            "-pure-next-token.csv",
            "-records.csv",
            ".json",
        )
    )
    table = capsys.readouterr().out
    assert LLAMA in table and "synthetic-gpt2" in table and table.count(" ok ") >= 2


def test_several_models_summary_reports_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import lenscheck.cli

    commands: list[list[str]] = []

    def child(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        """The first model succeeds and writes its summary rows, as the child does; the
        second exits 3 and writes none."""
        commands.append(list(cmd))
        assert cmd[-3] == "--summary-json"
        if len(commands) == 1:
            row = {"model": cmd[-1], "prompt": "capital-de", "status": "ok", "L_semantic": 3}
            Path(cmd[-2]).write_text(json.dumps([row]), encoding="utf-8")
            return subprocess.CompletedProcess(cmd, 0)
        return subprocess.CompletedProcess(cmd, 3)

    monkeypatch.setattr(lenscheck.cli.subprocess, "run", child)
    assert main(["run", "synthetic-llama,synthetic-gpt2", "--out-dir", str(tmp_path)]) == 1
    assert [cmd[-1] for cmd in commands] == ["synthetic-llama", "synthetic-gpt2"]
    table = capsys.readouterr().out
    cells = [
        [c.strip() for c in re.split("[┃│|]", line)[1:-1]]
        for line in table.splitlines()
        if re.match("[┃│|]", line)
    ]
    assert cells == [
        ["model", "prompt", "status", "L_copy", "L_semantic", "top1", "seconds"],
        ["synthetic-llama", "capital-de", "ok", "", "3", "", ""],
        ["synthetic-gpt2", "", "failed (3)", "", "", "", ""],  # no rows came back from it
    ]


def test_trust_remote_code_is_off_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lenscheck.backends import hf
    from lenscheck.config import LensConfig

    monkeypatch.setattr(hf, "_TOKENIZERS", type(hf._TOKENIZERS)())  # a cached one loads no more
    assert LensConfig().trust_remote_code is False
    args = build_parser().parse_args(["run"])
    assert args.trust_remote_code is None  # not given: the field's default
    assert _config(args).trust_remote_code is False
    seen: list[tuple[str, Any]] = []
    for cls in (AutoModelForCausalLM, AutoTokenizer):
        original = cls.from_pretrained

        def spy(*args: Any, _orig: Any = original, _name: str = cls.__name__, **kw: Any) -> Any:
            seen.append((_name, kw.get("trust_remote_code", "<absent>")))
            return _orig(*args, **kw)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    assert _llama(tmp_path / "a", "--no-heatmap") == 0
    assert seen == [("AutoModelForCausalLM", False), ("AutoTokenizer", False)]
    seen.clear()
    assert _llama(tmp_path / "b", "--no-heatmap", "--trust-remote-code") == 0
    assert seen == [("AutoModelForCausalLM", True), ("AutoTokenizer", True)]


def test_cuda_request_without_cuda_exits_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A GPU run that silently fell back to the CPU would pass against CPU goldens on the
    wrong hardware: an explicit --device that is missing is an error, before any folder or
    file exists. (Simulated where CUDA exists, so it runs everywhere.)"""
    import torch

    from lenscheck.device import torch_sees

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    calls = _no_load(monkeypatch)
    assert main(["run", LLAMA, "--device", "cuda", "--no-heatmap"]) == 2
    assert main(["run", LLAMA, "--device", "cuda", "--out-dir", str(tmp_path / "out")]) == 2
    assert calls == []
    assert list(tmp_path.iterdir()) == []  # no run-latest, no --out-dir folder, no file
    message = (
        f"device 'cuda' was requested but is not available here: {torch_sees()}. Choose an "
        "available device with --device (auto picks cuda, then mps, then cpu)"
    )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        message,
        message,
    ]
    assert "0 CUDA device(s) visible" in message


def test_run_latest_rotation_without_out_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["run", LLAMA, "--device", "cpu", "--no-heatmap"]
    with caplog.at_level(logging.INFO, logger="lenscheck"):
        assert main(argv) == 0
    # The log names the files, never the staging folder that is renamed to run-latest/.
    (wrote,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("wrote ")]
    written = sorted(p.name for p in (tmp_path / "run-latest").glob("output-*"))
    assert sorted(wrote.removeprefix("wrote ").split(", ")) == written and len(written) == 5
    latest = tmp_path / "run-latest"
    stamps = [p.name for p in latest.iterdir() if p.name.startswith("timestamp-")]
    assert len(stamps) == 1 and len(_outputs(latest)) == 5
    first_json = (latest / f"output-{LLAMA}.json").read_bytes()
    stamp = stamps[0].removeprefix("timestamp-")
    assert len(stamp) == len("YYYYMMDD-HHMM") and stamp[8] == "-"

    assert main(argv) == 0
    rotated = tmp_path / f"run-{stamp}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run-latest", f"run-{stamp}"])
    assert sorted(p.name for p in rotated.iterdir()) == sorted(
        [*_outputs(latest), f"timestamp-{stamp}"]
    )
    assert (rotated / f"output-{LLAMA}.json").read_bytes() == first_json
    assert len(_outputs(latest)) == 5
    assert len([p for p in latest.iterdir() if p.name.startswith("timestamp-")]) == 1


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("how", "code"),
    [("a mistyped model", 2), ("a failing load", 2), ("Ctrl-C during the lens", 130)],
)
def test_a_run_that_fails_leaves_run_latest_where_it_was(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    how: str,
    code: int,
) -> None:
    """run-latest/ rotates only after a run succeeded: a failed or interrupted one leaves the
    previous good run in place and its own (empty) folder nowhere; Ctrl-C is one line."""
    import lenscheck.runner

    monkeypatch.chdir(tmp_path)
    assert main(["run", LLAMA, "--device", "cpu", "--no-heatmap"]) == 0
    before = _tree(tmp_path)
    spec = LLAMA
    if how == "a mistyped model":
        spec = "synthetic-lama"
    else:
        error = KeyboardInterrupt() if how.startswith("Ctrl-C") else OSError("disk gone")

        def failing(*args: Any, **kwargs: Any) -> Any:
            raise error

        monkeypatch.setattr(lenscheck.runner, "run_model", failing)
    caplog.clear()
    assert main(["run", spec, "--device", "cpu", "--no-heatmap"]) == code
    assert _tree(tmp_path) == before  # nothing moved, nothing added, nothing left half-way
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    if code == 130:
        assert errors == [
            "interrupted (Ctrl-C): no output file was left half-written and run-latest/ was "
            "not rotated"
        ]


# -------------------------------------------------------------------- interrupted writing


@pytest.mark.parametrize("failure", [OSError("disk gone"), KeyboardInterrupt()])
def test_interrupted_write_leaves_no_output_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    """The rename of the second file fails: the set is all or nothing. The records CSV,
    renamed first, is rolled back, and no staged ``.part`` file or backup remains."""
    import lenscheck.artifacts

    real_replace = os.replace
    renames: list[str] = []

    def flaky(src: Any, dst: Any) -> None:
        if Path(dst).name.startswith("output-"):
            renames.append(Path(dst).name)
            if len(renames) == 2:
                raise failure
        real_replace(src, dst)

    monkeypatch.setattr(lenscheck.artifacts.os, "replace", flaky)
    # Ctrl-C ends like a shell reports SIGINT (130), any other failure with 2.
    assert _llama(tmp_path) == (130 if isinstance(failure, KeyboardInterrupt) else 2)
    monkeypatch.undo()
    assert renames == [f"output-{LLAMA}-records.csv", f"output-{LLAMA}-pure-next-token.csv"]
    assert _leftovers(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert _outputs(tmp_path) == []


# ----------------------------------------------------------------- --version, env, validate


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    import lenscheck

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"lenscheck {lenscheck.__version__}\n"


def test_env_text_and_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LENSCHECK_CACHE", str(tmp_path))
    assert main(["env"]) == 0
    text = capsys.readouterr().out
    for needle in (
        "python: ",
        "lenscheck: ",
        "torch: ",
        "transformers: ",
        "transformer-lens: ",
        "syrupy: ",
        "cuda: ",
        "torch.version.cuda: ",
        "mps: ",
        "CUDA_VISIBLE_DEVICES: ",
        f"folder: {tmp_path} (from $LENSCHECK_CACHE)",
        "embedded model: not provisioned",
    ):
        assert needle in text, needle
    assert main(["env", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(data) == ["cache", "devices", "python", "versions"]
    assert data["cache"]["folder"] == str(tmp_path)
    assert data["cache"]["embedded_provisioned"] is False


def test_validate_prints_every_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """More than the 50 the command once stopped at: each one, then the count."""
    from lenscheck.schema import csv_header

    header = ",".join(csv_header("records", 20))
    cells = ["0", "0", "x", "not-a-number", *["", ""] * 20, "1.0"]
    bad = tmp_path / "output-m-records.csv"
    bad.write_text("\n".join([header] + [",".join(cells)] * 60) + "\n", encoding="utf-8")
    assert main(["validate", str(bad)]) == 1
    captured = capsys.readouterr()
    assert len(captured.err.splitlines()) == 60
    assert captured.out == f"{bad}: 60 violation(s)\n"


# ----------------------------------------------------------------------- progress in logs


def _staged_runner(seen: dict[str, Any]) -> Any:
    """A run_model stand-in: goes through three stages, records whether transformers'
    progress bars were on while it ran, then fails (so nothing depends on ModelRun)."""

    def fake_run_model(spec: str, cfg: Any, out_dir: Any, *, stage: Any) -> Any:
        from transformers.utils import logging as hf_logging

        for name in ("load", "lens", "write"):
            stage(name)
        seen["bars"] = hf_logging.is_progress_bar_enabled()
        raise RuntimeError("stop after the stages")

    return fake_run_model


def test_progress_lines_when_stderr_is_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers.utils import logging as hf_logging

    import lenscheck.progress
    import lenscheck.runner

    seen: dict[str, Any] = {}
    monkeypatch.setattr(lenscheck.runner, "run_model", _staged_runner(seen))
    monkeypatch.setattr(lenscheck.progress, "stderr_is_terminal", lambda: False)
    hf_logging.enable_progress_bar()
    assert main(["run", LLAMA, "--out-dir", str(tmp_path)]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("lenscheck: ")]
    assert [ln.rsplit(" ", 2)[0] for ln in lines] == [
        f"lenscheck: {LLAMA}: load done in",
        f"lenscheck: {LLAMA}: lens done in",
        f"lenscheck: {LLAMA}: write failed after",
    ]
    assert all(ln.endswith(" s") for ln in lines)
    assert seen["bars"] is False  # transformers' bars were off during the run ...
    assert hf_logging.is_progress_bar_enabled()  # ... and are back on afterwards


def test_progress_verbose_keeps_transformers_bars_and_terminal_gets_no_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers.utils import logging as hf_logging

    import lenscheck.progress
    import lenscheck.runner

    seen: dict[str, Any] = {}
    monkeypatch.setattr(lenscheck.runner, "run_model", _staged_runner(seen))
    monkeypatch.setattr(lenscheck.progress, "stderr_is_terminal", lambda: True)
    hf_logging.enable_progress_bar()
    assert main(["run", LLAMA, "--out-dir", str(tmp_path), "-v"]) == 2
    err = capsys.readouterr().err
    assert "done in" not in err and "failed after" not in err  # the spinner's job there
    assert seen["bars"] is True


def test_verbose_reaches_the_per_model_subprocesses(tmp_path: Path) -> None:
    from lenscheck.cli import _subprocess_cmd

    summary = tmp_path / "rows.json"
    args = build_parser().parse_args(["run", "a", "b", "-vv", "--out-dir", str(tmp_path)])
    cmd = _subprocess_cmd("a", args, tmp_path, summary)
    assert "-vv" in cmd
    assert cmd[-3:] == ["--summary-json", str(summary), "a"]  # the model comes last
    quiet = build_parser().parse_args(["run", "a", "b", "--out-dir", str(tmp_path)])
    cmd = _subprocess_cmd("a", quiet, tmp_path, summary)
    assert not any(a.startswith("-v") for a in cmd)
    assert cmd[-3:] == ["--summary-json", str(summary), "a"]
