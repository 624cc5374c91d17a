"""Shared helpers of the plugin's pytester tests (imported by tests/plugin/conftest.py
and the test modules: ``from _plugin_helpers import ...``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lenscheck.models.cache import CACHE_ENV_VAR, cache_root

REPO = Path(__file__).resolve().parents[2]
#: The model cache as this process sees it. pytester points HOME at its temporary folder,
#: which would move the default cache there and rebuild every model (25 s for the embedded
#: one); the fixtures pin the inner runs to this folder through LENSCHECK_CACHE.
MODEL_CACHE = cache_root()
XDIST_ENV = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")
COMMITTED = REPO / "golden"
#: Each synthetic model's default-suite golden as this session's library versions write it
#: (by model; filled once per process by conftest's ``_warm_lens_modules``). Tests that edit
#: a golden and assert the exact drift start from these, not from the committed files: a new
#: transformers release moves the committed numbers by fp32 noise (2e-5 bits from 5.24 to
#: 5.25), which the golden gate forgives and an exact-delta assertion would not.
FRESH_GOLDENS: dict[str, bytes] = {}
#: Run the inner pytest without the cache plugin (nothing written under the project). In
#: process, lenscheck (a plugin of the outer run too) is imported already, which pytest
#: reports as "Module already imported so cannot be rewritten"; that is expected here.
BASE_ARGS = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


class LensProject:
    """A pytester project: ``pytest.ini``, golden copies, runs, golden edits."""

    def __init__(self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(CACHE_ENV_VAR, str(MODEL_CACHE))
        # Under `pytest -n N` this test runs in an xdist worker; the inner run is not one
        # (syrupy, for one, reads PYTEST_XDIST_WORKER and would drop its summary).
        for name in XDIST_ENV:
            monkeypatch.delenv(name, raising=False)
        # Under CI (CI or BUILD_NUMBER set) pytest prints the short summary untruncated, so
        # every message would appear twice; the inner run reads as on a user's terminal.
        for name in ("CI", "BUILD_NUMBER"):
            monkeypatch.delenv(name, raising=False)
        self.pytester = pytester
        self.path = pytester.path
        self.ini()

    def ini(self, *lines: str, name: str = "pytest.ini") -> Path:
        """Write ``[pytest]`` plus ``lines`` (replacing any earlier ini)."""
        path = self.path / name
        path.write_text("\n".join(["[pytest]", *lines]) + "\n", encoding="utf-8")
        return path

    def golden(self, model: str, golden_dir: str = "golden", cls: str = "cpu-float32") -> Path:
        """Where ``model``'s golden of class ``cls`` (default suite) lives in this project."""
        return self.path / golden_dir / model / f"{cls}.json"

    def copy_golden(self, *models: str, golden_dir: str = "golden") -> dict[str, Path]:
        """Put the goldens of ``models`` into the project: a synthetic model's from this
        session's own run (:data:`FRESH_GOLDENS`), so the inner run matches it exactly;
        another model's (the embedded ones) as committed."""
        out = {}
        for model in models:
            target = self.golden(model, golden_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            fresh = FRESH_GOLDENS.get(model)
            committed = COMMITTED / model / "cpu-float32.json"
            target.write_bytes(fresh if fresh is not None else committed.read_bytes())
            out[model] = target
        return out

    def edit_golden(
        self, model: str, edit: Callable[[dict[str, Any]], None], golden_dir: str = "golden"
    ) -> Path:
        """Load ``model``'s golden, apply ``edit`` in place, write it back (same format)."""
        from lenscheck.golden.store import dumps_golden

        path = self.golden(model, golden_dir)
        data = json.loads(path.read_text(encoding="utf-8"))
        edit(data)
        path.write_text(dumps_golden(data), encoding="utf-8")
        return path

    def run(self, *args: str) -> pytest.RunResult:
        """An in-process inner run."""
        return self.pytester.runpytest(*BASE_ARGS, *args)

    def run_subprocess(self, *args: str, timeout: float = 300) -> pytest.RunResult:
        """An inner run in a fresh interpreter (xdist, isolation)."""
        return self.pytester.runpytest_subprocess(*BASE_ARGS, *args, timeout=timeout)


def outcomes_by_test(result: pytest.RunResult) -> dict[str, str]:
    """``{"test_schema[synthetic-llama]": "passed", ...}`` from an in-process run."""
    out = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        name = report.nodeid.rsplit("::", 1)[-1]
        if report.when == "call" or (report.when == "setup" and not report.passed):
            out[name] = report.outcome
    return out


def failed_models(result: pytest.RunResult) -> dict[str, set[str]]:
    """``{model: {failed generated tests}}`` from an in-process run."""
    out: dict[str, set[str]] = {}
    for name, outcome in outcomes_by_test(result).items():
        match = re.fullmatch(r"(test_\w+)\[(.+)\]", name)
        if match and outcome == "failed":
            out.setdefault(match[2], set()).add(match[1])
    return out


def collected(result: pytest.RunResult) -> list[str]:
    """Test names (with parameters) listed by ``--collect-only`` (without ``-q``)."""
    return re.findall(r"<Function (\S+)>", result.stdout.str())


def snapshot_summary(result: pytest.RunResult) -> str:
    """syrupy's "snapshot report summary" section of the output ('' when absent)."""
    lines = result.outlines
    start = next((i for i, line in enumerate(lines) if "snapshot report summary" in line), None)
    if start is None:
        return ""
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("====")), None)
    return "\n".join(line for line in lines[start + 1 : end] if line.strip())


def header_models(result: pytest.RunResult) -> list[str]:
    """The model list of the plugin's report-header line."""
    match = re.search(r"^lenscheck: models=(\S+) ", result.stdout.str(), re.MULTILINE)
    assert match, "no lenscheck header line in the output"
    return match[1].split(",")


#: The generated tests every model gets, one per value class of the output files.
GENERATED = (
    "test_golden_file",
    "test_schema",
    "test_tokenization",
    "test_collapse",
    "test_trajectory",
    "test_records",
    "test_probes",
    "test_final_prediction",
    "test_decoding",
    "test_invariants",
    "test_rules",
    "test_metrics",
    "test_measurements",
)
