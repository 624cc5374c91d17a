"""pytest-xdist: -n 2 runs each model once, on one worker, and writes goldens intact."""

from __future__ import annotations

import collections
import re

import pytest
from _plugin_helpers import COMMITTED, GENERATED, LensProject, snapshot_summary

from lenscheck.golden.payload import FORMAT_VERSION
from lenscheck.golden.store import read_golden
from lenscheck.models import SYNTHETIC_ALIASES

pytest.importorskip("xdist")

#: Loaded by every process of the inner run (controller and workers): logs each model run
#: (wrapping lenscheck.runner.run_model, which the plugin calls) and each test's worker.
RECORDER = """
import os
from pathlib import Path

import pytest

LOG = Path(__file__).with_name("xdist.log")


def _write(line):
    with LOG.open("a", encoding="utf-8") as fh:  # appends are atomic at this size
        fh.write(line + "\\n")


def _worker():
    return os.environ.get("PYTEST_XDIST_WORKER", "master")


class Recorder:
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        _write(f"test {_worker()} {item.name}")


def pytest_configure(config):
    import lenscheck.runner

    original = lenscheck.runner.run_model

    def recording(spec, cfg, *args, **kwargs):
        _write(f"run {_worker()} {spec}")
        return original(spec, cfg, *args, **kwargs)

    lenscheck.runner.run_model = recording  # a fresh interpreter: nothing to restore
    config.pluginmanager.register(Recorder(), "xdist-recorder")  # global, unlike conftests
"""


def read_log(project: LensProject) -> tuple[list[tuple[str, str]], dict[str, set[str]]]:
    """(model runs as (worker, model)), {model: workers that ran its tests}."""
    runs, tests = [], collections.defaultdict(set)
    for line in (project.path / "xdist.log").read_text(encoding="utf-8").splitlines():
        kind, worker, what = line.split(" ", 2)
        if kind == "run":
            runs.append((worker, what))
        else:
            match = re.fullmatch(r"test_\w+\[(.+)\]", what)
            assert match, line
            tests[match[1]].add(worker)
    return runs, dict(tests)


def check_distribution(project: LensProject) -> None:
    runs, tests = read_log(project)
    # Each model ran exactly once, on a worker (not the controller).
    assert sorted(model for _, model in runs) == sorted(SYNTHETIC_ALIASES)
    assert {worker for worker, _ in runs} <= {"gw0", "gw1"}
    # All generated tests of a model ran on the worker that ran the model: loaded once there.
    assert tests == {model: {worker} for worker, model in runs}
    # And the models were spread over both workers.
    assert {worker for worker, _ in runs} == {"gw0", "gw1"}


@pytest.mark.slow  # two worker interpreters: `nox -s slow`
def test_n2_passes_one_run_per_model_per_worker(lens_project: LensProject) -> None:
    lens_project.copy_golden(*SYNTHETIC_ALIASES)
    lens_project.pytester.makeconftest(RECORDER)
    before = {m: lens_project.golden(m).read_bytes() for m in SYNTHETIC_ALIASES}
    result = lens_project.run_subprocess("-n", "2", "--lens-models=synthetic")
    result.assert_outcomes(passed=5 * len(GENERATED))
    assert result.ret == 0
    out = result.stdout.str()
    assert "created: 2/2 workers" in out
    assert snapshot_summary(result) == "5 snapshots passed."
    check_distribution(lens_project)
    assert {m: lens_project.golden(m).read_bytes() for m in SYNTHETIC_ALIASES} == before


@pytest.mark.slow
def test_n2_snapshot_update_writes_all_goldens_intact(lens_project: LensProject) -> None:
    lens_project.pytester.makeconftest(RECORDER)
    result = lens_project.run_subprocess("-n", "2", "--lens-models=synthetic", "--snapshot-update")
    result.assert_outcomes(passed=5 * len(GENERATED))
    assert snapshot_summary(result) == "5 snapshots generated."
    check_distribution(lens_project)
    written = sorted(p.relative_to(lens_project.path) for p in lens_project.path.rglob("*.json"))
    assert [str(p) for p in written] == sorted(
        f"golden/{m}/cpu-float32.json" for m in SYNTHETIC_ALIASES
    )
    for model in SYNTHETIC_ALIASES:
        golden = read_golden(lens_project.golden(model))  # valid, complete JSON
        assert (golden["format_version"], golden["model"], golden["class"]) == (
            FORMAT_VERSION,
            model,
            "cpu-float32",
        )
        committed = read_golden(COMMITTED / model / "cpu-float32.json")
        assert golden["model_stats"] == committed["model_stats"]
        rows, old = (g["prompts"]["capital-de"]["next_token"] for g in (golden, committed))
        assert rows["top1"] == old["top1"]
    # No temporary files of the atomic writes were left behind.
    assert sorted(p.name for p in (lens_project.path / "golden").rglob("*") if p.is_file()) == [
        "cpu-float32.json"
    ] * len(SYNTHETIC_ALIASES)


def test_model_of_node_ids() -> None:
    """The controller's grouping key: the lens model in a node id's parameter."""
    from lenscheck.plugin.xdist_groups import model_of

    models = ("synthetic-llama", "synthetic-gpt2", "org/model-7b")
    suite = "lenscheck::test_schema"
    assert model_of(f"{suite}[synthetic-llama]", models) == "synthetic-llama"
    assert model_of("t.py::test_x[synthetic-gpt2-3]", models) == "synthetic-gpt2"
    assert model_of("t.py::test_x[3-synthetic-gpt2]", models) == "synthetic-gpt2"
    assert model_of("t.py::test_x[a-org/model-7b-b]", models) == "org/model-7b"
    assert model_of("t.py::test_x[synthetic-llama2]", models) is None
    assert model_of("t.py::test_plain", models) is None
    assert model_of("t.py::test_x[1]", models) is None
