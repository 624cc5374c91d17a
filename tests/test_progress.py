"""lenscheck.progress: one log line per finished stage off a terminal, quiet transformers bars."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest

from lenscheck import progress
from lenscheck.progress import (
    LOGGER_NAME,
    StageProgress,
    install_log_handler,
    model_progress,
    quiet_library_progress,
)


class FakeClock:
    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]


@pytest.fixture
def progress_records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture the progress logger even when the CLI's handler stopped its propagation."""
    logger = logging.getLogger(LOGGER_NAME)
    before = logger.propagate
    logger.propagate = True
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    try:
        yield caplog
    finally:
        logger.propagate = before


def test_one_line_per_finished_stage_with_elapsed_seconds(
    progress_records: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(10.0, 11.25, 11.5, 14.0)
    with StageProgress("embedded", interactive=False, clock=clock) as p:
        p.stage("load")
        p.stage("lens")
        p.stage("write")
    assert _lines(progress_records) == [
        "embedded: load done in 1.2 s",
        "embedded: lens done in 0.2 s",
        "embedded: write done in 2.5 s",
    ]


def test_a_failing_stage_says_failed_after(progress_records: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(0.0, 2.0, 5.0)
    with pytest.raises(RuntimeError), StageProgress("m", interactive=False, clock=clock) as p:
        p.stage("load")
        p.stage("lens")
        raise RuntimeError("boom")
    assert _lines(progress_records) == ["m: load done in 2.0 s", "m: lens failed after 3.0 s"]


def test_no_stage_no_line(progress_records: pytest.LogCaptureFixture) -> None:
    with StageProgress("m", interactive=False, clock=FakeClock(0.0)):
        pass
    assert _lines(progress_records) == []


def test_interactive_draws_a_spinner_and_logs_nothing(
    progress_records: pytest.LogCaptureFixture,
) -> None:
    with StageProgress("m", interactive=True) as p:
        assert p._bar is not None
        p.stage("load")
        p.stage("lens")
    assert p._bar is None  # stopped
    assert _lines(progress_records) == []


def test_handler_prefixes_lenscheck_and_writes_to_current_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger = logging.getLogger(LOGGER_NAME)
    saved = (list(logger.handlers), logger.propagate, logger.level)
    try:
        install_log_handler()
        install_log_handler()  # idempotent: one line, not two
        logging.getLogger(LOGGER_NAME).info("%s: %s done in %.1f s", "embedded", "load", 1.23)
        captured = capsys.readouterr()
        assert captured.err == "lenscheck: embedded: load done in 1.2 s\n"
        assert captured.out == ""
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def test_quiet_library_progress_disables_and_restores_transformers_bars() -> None:
    hf_logging = pytest.importorskip("transformers.utils.logging")
    hf_logging.enable_progress_bar()
    with quiet_library_progress():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
    with quiet_library_progress(verbose=True):
        assert hf_logging.is_progress_bar_enabled()  # -v keeps them
    # A caller who had switched them off keeps them off afterwards.
    hf_logging.disable_progress_bar()
    try:
        with quiet_library_progress():
            assert not hf_logging.is_progress_bar_enabled()
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()


def test_quiet_library_progress_restores_after_an_exception() -> None:
    hf_logging = pytest.importorskip("transformers.utils.logging")
    hf_logging.enable_progress_bar()
    with pytest.raises(KeyError), quiet_library_progress():
        raise KeyError("x")
    assert hf_logging.is_progress_bar_enabled()


def test_model_progress_follows_the_terminal(
    monkeypatch: pytest.MonkeyPatch, progress_records: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: False)
    with model_progress("m") as stage:
        stage("load")
    assert [line.split(" done in ")[0] for line in _lines(progress_records)] == ["m: load"]
    progress_records.clear()
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    with model_progress("m") as stage:
        stage("load")
    assert _lines(progress_records) == []


def test_stderr_is_terminal_survives_a_replaced_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoTty:
        def write(self, text: str) -> int:
            return len(text)

    monkeypatch.setattr("sys.stderr", NoTty())
    assert progress.stderr_is_terminal() is False


def test_the_gguf_conversion_bar_is_off_even_after_torch_imported_tqdm() -> None:
    """transformers' GGUF reader draws its bar with plain tqdm, which torch has imported
    long before lenscheck runs (as in the console script): off inside, on with verbose."""
    import subprocess

    pytest.importorskip("transformers")
    code = (
        "import sys, torch, importlib\n"
        "from lenscheck.progress import quiet_library_progress\n"
        "with quiet_library_progress(verbose=sys.argv[1] == 'v'):\n"
        "    m = importlib.import_module('transformers.modeling_gguf_pytorch_utils')\n"
        "    for _ in m.tqdm(range(3), desc='Converting and de-quantizing'): pass\n"
    )
    for flag, drawn in (("q", False), ("v", True)):
        proc = subprocess.run(
            [sys.executable, "-c", code, flag], capture_output=True, text=True, check=True
        )
        assert ("Converting and de-quantizing" in proc.stderr) is drawn, proc.stderr


def test_an_imported_gguf_module_gets_a_disabled_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    import functools
    import types

    calls: list[dict[str, object]] = []

    def fake_tqdm(*args: object, **kwargs: object) -> list[dict[str, object]]:
        calls.append(kwargs)
        return calls

    module = types.ModuleType("transformers.modeling_gguf_pytorch_utils")
    module.tqdm = fake_tqdm  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    with quiet_library_progress():
        assert isinstance(module.tqdm, functools.partial)
        module.tqdm([1])
    assert calls == [{"disable": True}]
    assert module.tqdm is fake_tqdm  # restored
