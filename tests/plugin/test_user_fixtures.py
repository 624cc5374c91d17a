"""Users' own tests on the plugin's fixtures: lens_run, lens_golden, lens_model, lens_settings."""

from __future__ import annotations

import json
from typing import Any

from _plugin_helpers import COMMITTED, GENERATED, LensProject, outcomes_by_test

MODELS = ("synthetic-opt-postnorm", "synthetic-llama")


def committed(model: str) -> dict[str, Any]:
    return dict(json.loads((COMMITTED / model / "cpu-float32.json").read_text(encoding="utf-8")))


USER_TESTS = """
import pytest
from lenscheck.golden.compare import DriftReport

EXPECTED_L_COPY = {expected_l_copy!r}
RUNS = {{}}


@pytest.fixture(autouse=True)
def one_run_per_model(request):
    if "lens_run" in request.fixturenames:
        run = request.getfixturevalue("lens_run").run
        assert RUNS.setdefault(run.spec, run) is run, "the model ran twice"


def test_knows(lens_run, lens_model):
    assert lens_run.model == lens_model
    assert lens_run.diagnostics["L_semantic"] is None  # random weights never answer "Berlin"
    assert lens_run.diagnostics["L_copy"] == EXPECTED_L_COPY[lens_model]
    assert lens_run.diagnostics["last_layer_consistency"]["top1_agree"] is True
    assert lens_run.golden_class == "cpu-float32"


def test_records(lens_run):
    n_layers = lens_run.json["model_stats"]["num_layers"]
    assert [r["layer"] for r in lens_run.pure_records] == list(range(n_layers + 1))
    assert {{r["layer"] for r in lens_run.records}} == set(range(n_layers + 1))


def test_residuals(lens_run):
    residuals = lens_run.residuals()
    n_layers = lens_run.json["model_stats"]["num_layers"]
    assert len(residuals) == n_layers + 1
    shape = (len(lens_run.run.result.input_ids), lens_run.json["model_stats"]["d_model"])
    assert {{tuple(r.shape) for r in residuals}} == {{shape}}


def test_compare(lens_golden, lens_model):
    report = lens_golden.compare()
    assert isinstance(report, DriftReport)
    assert report.ok, report.drifts
    assert (report.model, report.golden_class, report.run_class) == (
        lens_model, "cpu-float32", "cpu-float32")
    assert report.drifts == []
    assert lens_golden.golden_path() == lens_golden.path
    assert lens_golden.compare(sections=("collapse",)).ok


def test_compare_sees_a_tampered_golden(lens_golden, lens_model, tmp_path):
    if lens_model != "synthetic-llama":
        pytest.skip("tampered golden only for llama")
    # ... the llama golden of this project has layer 1's entropy moved by 0.25 bit.
    report = lens_golden.compare()
    assert not report.ok
    assert [(d.section, d.metric, d.layer) for d in report.drifts] == [
        ("trajectory", "entropy", 1)]
    assert round(report.drifts[0].delta, 6) == 0.25
    assert report.first_divergence() is report.drifts[0]
    assert lens_golden.compare(sections=("schema", "collapse")).ok


def test_settings(lens_settings):
    assert lens_settings.models == {models!r}
    assert lens_settings.device == "cpu"
"""


def test_users_tests_on_the_fixtures(lens_project: LensProject) -> None:
    lens_project.copy_golden(*MODELS)

    def tamper(data: dict[str, Any]) -> None:
        data["prompts"]["capital-de"]["next_token"]["entropy"][1] += 0.25

    lens_project.edit_golden("synthetic-llama", tamper)
    expected_l_copy = {
        m: committed(m)["prompts"]["capital-de"]["collapse"]["L_copy"] for m in MODELS
    }
    assert expected_l_copy == {"synthetic-opt-postnorm": 1, "synthetic-llama": None}
    lens_project.pytester.makepyfile(
        test_users=USER_TESTS.format(expected_l_copy=expected_l_copy, models=MODELS)
    )
    # Only the users' tests (the generated ones would fail on the tampered llama golden).
    result = lens_project.run(
        f"--lens-models={','.join(MODELS)}", "--lens-device=cpu", "-k", "not suite", "-rs"
    )
    outcomes = outcomes_by_test(result)
    assert outcomes == {
        **{f"{t}[{m}]": "passed" for m in MODELS for t in ("test_knows", "test_records")},
        **{f"test_residuals[{m}]": "passed" for m in MODELS},
        "test_settings": "passed",  # no model fixture: not parametrized
        "test_compare[synthetic-opt-postnorm]": "passed",
        "test_compare[synthetic-llama]": "failed",  # report.ok is False: the tampering
        "test_compare_sees_a_tampered_golden[synthetic-opt-postnorm]": "skipped",
        "test_compare_sees_a_tampered_golden[synthetic-llama]": "passed",
    }
    result.assert_outcomes(passed=9, failed=1, skipped=1, deselected=2 * len(GENERATED))
    assert "Drift(section='trajectory', metric='entropy'" in result.stdout.str()


#: The README's fixture example, as a user writes it in their own project.
README_EXAMPLE = """
def test_no_drift_in_the_trajectory(lens_golden):
    report = lens_golden.compare("trajectory")
    assert report.ok, report.drifts
"""


def test_blessing_with_a_users_golden_test_passes_and_the_next_run_too(
    lens_project: LensProject,
) -> None:
    """--snapshot-update with a user's own lens_golden test: the golden is written and the
    user's test compares with the document being blessed (it used to fail, exit 1, asking
    for the very command just run)."""
    lens_project.pytester.makepyfile(test_mine=README_EXAMPLE)
    blessed = lens_project.run("--lens-models=synthetic-llama", "--snapshot-update")
    blessed.assert_outcomes(passed=len(GENERATED) + 1)
    assert blessed.ret == 0
    assert lens_project.golden("synthetic-llama").is_file()
    again = lens_project.run("--lens-models=synthetic-llama")
    again.assert_outcomes(passed=len(GENERATED) + 1)
