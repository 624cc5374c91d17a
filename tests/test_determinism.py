"""Byte-identical output across processes: two ``python -m lenscheck run embedded`` runs, and
the test process' own run of the same model.

All three use one torch thread (the child processes through ``OMP_NUM_THREADS=1``): the
model's own logits, which the JSON's probes and final prediction hold, change in the last
digits between 1 and 2 threads, so only same-thread-count runs can be compared byte for
byte (the lens' CSVs were identical across 1 and 2 threads when checked). The two CLI runs
go concurrently, one core each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _lens_fixtures import (
    EMBEDDED_FILE_NAME,
    SINGLE_THREAD_ENV,
    embedded_run,
    write_run,
)

FILES = (
    f"output-{EMBEDDED_FILE_NAME}-records.csv",
    f"output-{EMBEDDED_FILE_NAME}-pure-next-token.csv",
    f"output-{EMBEDDED_FILE_NAME}.json",
    # The standard preset's extended schema adds the two sidecars.
    f"output-{EMBEDDED_FILE_NAME}-pure-next-token-rawlens.csv",
    f"output-{EMBEDDED_FILE_NAME}-milestones.csv",
)


@pytest.fixture(scope="module")
def two_cli_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``lenscheck run embedded`` twice, each in its own fresh interpreter."""
    env = {**os.environ, **SINGLE_THREAD_ENV, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    dirs = [tmp_path_factory.mktemp(f"det-{name}") for name in ("A", "B")]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lenscheck", "run", "embedded", "--device", "cpu",
             "--out-dir", str(out), "--no-heatmap"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for out in dirs
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    return dirs[0], dirs[1]


def _json_diff(a: object, b: object, path: str = "") -> list[str]:
    """Key paths whose values differ (for a readable failure message)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}" for k in a.keys() ^ b.keys()]
        for k in a.keys() & b.keys():
            out += _json_diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _json_diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [path or "."]


def _assert_same_bytes(name: str, ours: bytes, theirs: bytes, what: str) -> None:
    if name.endswith(".json") and ours != theirs:
        diff = _json_diff(json.loads(ours), json.loads(theirs))
        pytest.fail(f"{name} differs {what} at {diff[:20]}")
    assert ours == theirs, f"{name} differs {what}"


@pytest.mark.slow
def test_two_processes_write_identical_bytes(two_cli_runs: tuple[Path, Path]) -> None:
    a, b = two_cli_runs
    assert sorted(p.name for p in a.iterdir()) == sorted(FILES)
    assert sorted(p.name for p in b.iterdir()) == sorted(FILES)
    for name in FILES:
        _assert_same_bytes(name, (a / name).read_bytes(), (b / name).read_bytes(), "A vs B")
    assert len((a / FILES[0]).read_bytes()) > 100_000  # 527 rows, not an empty file
    data = json.loads((a / FILES[2]).read_bytes())
    assert data["diagnostics"]["L_semantic"] == 30  # and it is the real run


@pytest.mark.slow
def test_cli_run_equals_the_in_process_run(two_cli_runs: tuple[Path, Path], tmp_path: Path) -> None:
    """The library called from pytest (another process, other modules loaded, the model
    already used by other tests) writes the same bytes as the console script."""
    written = write_run(embedded_run("transformers", preset="standard"), tmp_path)
    a, _ = two_cli_runs
    for key, name in zip(("records", "pure", "json"), FILES):
        _assert_same_bytes(name, written[key].read_bytes(), (a / name).read_bytes(), "in-process")
