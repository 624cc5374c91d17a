"""--lens-models / ini lens_models: which models the generated golden tests run on."""

from __future__ import annotations

import pytest
from _plugin_helpers import GENERATED, LensProject, collected, header_models, outcomes_by_test

from lenscheck.models import SYNTHETIC_ALIASES

USER_TEST = "def test_mine():\n    assert sum([1, 2]) == 3\n"


def test_absent_adds_nothing(lens_project: LensProject) -> None:
    """Without models the project's own tests are all there is: no skipped lens tests."""
    lens_project.pytester.makepyfile(test_mine=USER_TEST)
    result = lens_project.run("-rs")
    result.assert_outcomes(passed=1)
    assert outcomes_by_test(result) == {"test_mine": "passed"}
    assert "SKIPPED" not in result.stdout.str()
    assert "lenscheck: models=" not in result.stdout.str()  # no header without models


def test_a_users_lens_fixture_test_is_skipped_with_one_line_reason(
    lens_project: LensProject,
) -> None:
    """Only a test that asked for a lens fixture hears about the missing option."""
    lens_project.pytester.makepyfile(
        test_mine=USER_TEST + "\n\ndef test_lens(lens_run):\n    assert lens_run\n"
    )
    result = lens_project.run("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    (line,) = [line for line in result.outlines if line.startswith("SKIPPED")]
    assert line.endswith("no --lens-models (or lens_models ini) given: lens golden tests not run")


def test_ini_lens_models_runs_and_passes(lens_project: LensProject) -> None:
    lens_project.ini("lens_models = synthetic-llama")
    lens_project.copy_golden("synthetic-llama")
    lens_project.pytester.makepyfile(test_mine=USER_TEST)
    result = lens_project.run()
    result.assert_outcomes(passed=1 + len(GENERATED))
    assert header_models(result) == ["synthetic-llama"]
    assert set(outcomes_by_test(result)) == {"test_mine"} | {
        f"{name}[synthetic-llama]" for name in GENERATED
    }


def test_option_overrides_ini(lens_project: LensProject) -> None:
    lens_project.ini("lens_models = synthetic-llama")
    result = lens_project.run("--collect-only", "--lens-models=synthetic-gpt2")
    assert header_models(result) == ["synthetic-gpt2"]
    assert collected(result) == [f"{name}[synthetic-gpt2]" for name in GENERATED]


def test_synthetic_expands_to_all_five(lens_project: LensProject) -> None:
    result = lens_project.run("--collect-only", "--lens-models=synthetic")
    assert result.ret == 0
    assert header_models(result) == list(SYNTHETIC_ALIASES)
    assert len(SYNTHETIC_ALIASES) == 5
    names = collected(result)
    assert len(names) == 5 * len(GENERATED)
    for model in SYNTHETIC_ALIASES:
        assert [n for n in names if n.endswith(f"[{model}]")] == [
            f"{name}[{model}]" for name in GENERATED
        ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            " synthetic-llama , synthetic-llama,synthetic-gpt2 ,",
            ["synthetic-llama", "synthetic-gpt2"],
        ),
        (
            "synthetic-neox,synthetic,  synthetic-neox",
            ["synthetic-neox", *(m for m in SYNTHETIC_ALIASES if m != "synthetic-neox")],
        ),
    ],
    ids=["spaces-and-duplicates", "group-overlap"],
)
def test_duplicates_and_spaces_are_removed(
    lens_project: LensProject, text: str, expected: list[str]
) -> None:
    result = lens_project.run("--collect-only", f"--lens-models={text}")
    assert result.ret == 0
    assert header_models(result) == expected
    names = collected(result)
    assert len(names) == len(expected) * len(GENERATED)
    assert len(set(names)) == len(names)  # each (test, model) once


@pytest.mark.parametrize("source", ["option", "ini"])
def test_empty_list_is_a_usage_error(lens_project: LensProject, source: str) -> None:
    if source == "ini":
        lens_project.ini("lens_models = , ")
        result = lens_project.run()
    else:
        result = lens_project.run("--lens-models= , ")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --lens-models: no model given in *: expected a comma-separated list of ids"]
    )
    assert "passed" not in result.stdout.str()


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (
            "embeded",
            "unknown model 'embeded': no offline alias is called that. Did you mean 'embedded'?",
        ),
        ("./models/missing", "looks like a local folder, but it does not exist."),
    ],
)
def test_a_model_that_cannot_load_is_a_short_usage_error(
    lens_project: LensProject, spec: str, says: str
) -> None:
    """Before collection, in one message (it used to be ten setup errors, 876 lines)."""
    result = lens_project.run(f"--lens-models={spec}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = [line for line in result.stderr.lines if line.strip()]
    assert len(err) == 1 and err[0].startswith("ERROR: --lens-models: ")
    assert says in err[0] and "a local checkpoint folder" in err[0]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
