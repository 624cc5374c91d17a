"""The CI entry points run what the README says: its test command, and every gate session."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _threads import share_cores_between_workers, worker_threads

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
CI_RUN = (REPO / ".ci" / "run").read_text(encoding="utf-8")
WORKFLOW = (REPO / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
NOXFILE = (REPO / "noxfile.py").read_text(encoding="utf-8")


def _quickstart() -> list[str]:
    block = README.split("## Quickstart", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def _ci_sessions() -> list[str]:
    sessions: list[str] = []
    for line in CI_RUN.splitlines():
        if m := re.match(r'"\$PYTHON" noxfile\.py -s ((?:\w+ ?)+)', line):
            sessions += m.group(1).split()
    return sessions


def test_ci_runs_the_readmes_two_commands_test_command_first() -> None:
    demo, test = _quickstart()
    assert (demo, test) == ("python3 noxfile.py -s demo", "python3 noxfile.py -s unit")
    first = next(line for line in CI_RUN.splitlines() if line.startswith('"$PYTHON"'))
    assert first == '"$PYTHON" noxfile.py -s unit'


def test_every_session_ci_runs_exists_and_the_workflow_runs_it_too() -> None:
    sessions = _ci_sessions()
    assert sessions == [
        "unit",
        "slow",
        "lint",
        "typecheck",
        "golden",
        "gemma",
        "qwen2",
        "calibrate",
        "gpu",
    ]
    defined = set(re.findall(r"@nox\.session[^\n]*\ndef (\w+)\(", NOXFILE))
    assert set(sessions) <= defined
    for name in sessions:
        assert f"python noxfile.py -s {name}" in WORKFLOW, name
    assert "noxfile.py -s gpu -- --dry-run" in CI_RUN
    assert "python noxfile.py -s gpu -- --dry-run" in WORKFLOW


def test_the_unit_gate_and_the_slow_step_split_the_suite_by_one_marker() -> None:
    """Nothing is dropped between them: unit takes `not slow`, slow takes `slow`."""
    unit = NOXFILE.split("def unit(", 1)[1].split("\n\n\n", 1)[0]
    slow = NOXFILE.split("def slow(", 1)[1].split("\n\n\n", 1)[0]
    assert '"-m", "not slow"' in unit and '"-m", "slow"' in slow
    assert '"--lens-models=synthetic"' in unit and '"--lens-models=synthetic"' in slow


@pytest.mark.parametrize(
    ("cpus", "workers", "threads"), [(2, 2, 1), (16, 2, 8), (2, 4, 1), (None, 2, 1), (8, 3, 2)]
)
def test_xdist_workers_split_the_cores_between_them(
    cpus: int | None, workers: int, threads: int
) -> None:
    assert worker_threads(cpus, workers) == threads


@pytest.fixture
def torch_threads() -> Iterator[Any]:
    import torch

    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("workers", "explicit", "env", "threads"),
    [("2", None, "1", 1), ("2", "3", "3", 3), ("1", None, None, None)],
    ids=["two-workers", "explicit-wins", "no-xdist"],
)
def test_a_worker_runs_torch_on_its_share_of_the_cores(
    monkeypatch: pytest.MonkeyPatch,
    torch_threads: Any,
    workers: str,
    explicit: str | None,
    env: str | None,
    threads: int | None,
) -> None:
    """The gate runs `-n 2` on 2 cores: each worker gets one intra-op thread."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", workers)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    if explicit is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", explicit)
    torch_threads.set_num_threads(2)
    share_cores_between_workers()
    assert os.environ.get("OMP_NUM_THREADS") == env
    assert os.environ.get("MKL_NUM_THREADS") == env
    assert torch_threads.get_num_threads() == (2 if threads is None else threads)


@pytest.mark.parametrize("session", ["unit", "slow", "mutation"])
def test_sessions_that_run_the_norms_tests_install_the_tl_extra(session: str) -> None:
    """tests/test_norms.py requires TransformerLens' norm bridges; the extra provides them."""
    body = NOXFILE.split(f"def {session}(", 1)[1].split("\n\n\n", 1)[0]
    assert 'install(session, "test,tl")' in body
