"""The plugin changes nothing in a session that did not ask for lens models: no tests, no
warning filters, no torch import, no seeding, no global torch settings afterwards; and its
generated tests have real node ids."""

from __future__ import annotations

import pytest
from _plugin_helpers import GENERATED, LensProject, collected

USER_TEST = "def test_ok():\n    assert 1 + 1 == 2\n"
#: All a session without lens options imports of lenscheck: the entry module and the option
#: declarations, standard library only (docs/plugin.md says so; nox -s bench measures the cost).
IDLE_MODULES = [
    "lenscheck",
    "lenscheck._validate",
    "lenscheck._version",
    "lenscheck.config",
    "lenscheck.options",
    "lenscheck.plugin",
    "lenscheck.plugin.options",
    "lenscheck.prompts",
    "lenscheck.vocab",
]

#: Written by the inner session at its end: what it left behind in the process.
STATE_PROBE = """
import json, sys, warnings
from pathlib import Path


def pytest_unconfigure(config):
    state = {
        "torch_imported": "torch" in sys.modules,
        "model_code_imported": "transformers" in sys.modules or "lenscheck.runner" in sys.modules,
        "syrupy_imported": "syrupy" in sys.modules,
        "lenscheck_modules": sorted(m for m in sys.modules if m.split(".")[0] == "lenscheck"),
        "filters": [str(f[1].pattern) for f in warnings.filters if f[1] is not None],
        "inifilters": list(config.getini("filterwarnings")),
    }
    if state["torch_imported"]:
        import torch
        state["deterministic"] = torch.are_deterministic_algorithms_enabled()
        state["rng_untouched"] = bool(torch.equal(torch.random.get_rng_state(), RNG))
    Path(__file__).with_name("state.json").write_text(json.dumps(state))


def pytest_configure(config):
    global RNG
    if "torch" in sys.modules:
        import torch
        RNG = torch.random.get_rng_state()
"""


def _state(project: LensProject) -> dict[str, object]:
    import json

    data: dict[str, object] = json.loads((project.path / "state.json").read_text())
    return data


def test_without_models_a_session_is_left_alone(lens_project: LensProject) -> None:
    lens_project.pytester.makepyfile(test_mine=USER_TEST)
    lens_project.pytester.makeconftest(STATE_PROBE)
    # A fresh interpreter, where imports are observable; syrupy's own plugin is off, so a
    # syrupy import would be lenscheck's.
    result = lens_project.run_subprocess("-p", "no:syrupy")
    result.assert_outcomes(passed=1)
    assert "lenscheck:" not in result.stdout.str()  # no header lines, no summary section
    state = _state(lens_project)
    assert state["torch_imported"] is False
    assert (state["syrupy_imported"], state["lenscheck_modules"]) == (False, IDLE_MODULES)
    assert not any("snapshot" in f.lower() for f in state["filters"])  # type: ignore[union-attr]
    assert state["inifilters"] == []


@pytest.mark.slow  # a fresh interpreter that imports torch: `nox -s slow`
def test_ini_models_and_a_selected_node_id_load_no_model(lens_project: LensProject) -> None:
    lens_project.ini("lens_models = synthetic-llama")
    lens_project.pytester.makepyfile(test_mine=USER_TEST)
    lens_project.pytester.makeconftest(STATE_PROBE)
    for selection in ("test_mine.py::test_ok", "test_mine.py"):
        result = lens_project.run_subprocess(selection)
        result.assert_outcomes(passed=1)
        assert "lenscheck::" not in result.stdout.str()
        # Settings were checked (torch may be imported for the device), no model was loaded.
        assert _state(lens_project)["model_code_imported"] is False
    # A plain run of the project (testpaths / directories) does run the lens tests.
    lens_project.copy_golden("synthetic-llama")
    everything = lens_project.run()
    everything.assert_outcomes(passed=1 + len(GENERATED))


@pytest.mark.slow  # a fresh interpreter that imports torch: `nox -s slow`
def test_lens_runs_leave_torch_settings_and_rng_as_they_were(lens_project: LensProject) -> None:
    lens_project.copy_golden("synthetic-llama")
    lens_project.pytester.makeconftest(
        "import torch\n" + STATE_PROBE  # torch imported before the plugin's runs
    )
    result = lens_project.run_subprocess("--lens-models=synthetic-llama")
    result.assert_outcomes(passed=len(GENERATED))
    state = _state(lens_project)
    assert state["deterministic"] is False
    assert state["rng_untouched"] is True


def test_no_unknown_mark_warning_without_xdist(lens_project: LensProject) -> None:
    lens_project.copy_golden("synthetic-llama")
    result = lens_project.run(
        "-p",
        "no:xdist",
        "-W",
        "error::pytest.PytestUnknownMarkWarning",
        "--lens-models=synthetic-llama",
    )
    result.assert_outcomes(passed=len(GENERATED))
    assert "PytestUnknownMarkWarning" not in result.stdout.str()


def test_generated_tests_have_real_node_ids(lens_project: LensProject) -> None:
    result = lens_project.run("--collect-only", "-q", "--lens-models=synthetic-llama")
    ids = [line for line in result.outlines if "::" in line]
    assert ids == [f"lenscheck::{name}[synthetic-llama]" for name in GENERATED]
    # -k selects them by test name, -m by the marker.
    picked = lens_project.run("--collect-only", "--lens-models=synthetic-llama", "-k", "records")
    assert collected(picked) == ["test_records[synthetic-llama]"]
    marked = lens_project.run("--collect-only", "--lens-models=synthetic-llama", "-m", "lens")
    assert len(collected(marked)) == len(GENERATED)


@pytest.mark.parametrize("arg", ["", "--lens-device=cpu"])
def test_the_help_group_is_named_lenscheck(lens_project: LensProject, arg: str) -> None:
    result = lens_project.run("--help", *([arg] if arg else []))
    result.stdout.fnmatch_lines(["lenscheck: logit-lens golden tests:", "*--lens-models=*"])
