"""--lens-models / ini lens_models: which models the generated golden tests run on."""

from __future__ import annotations

import pytest
from _plugin_helpers import GENERATED, LensProject, collected, header_models, outcomes_by_test

from lenscheck.models import SYNTHETIC_ALIASES

USER_TEST = "def test_mine():\n    assert sum([1, 2]) == 3\n"


def test_absent_skips_lens_tests_with_one_line_reason(lens_project: LensProject) -> None:
    lens_project.pytester.makepyfile(test_mine=USER_TEST)
    result = lens_project.run("-rs")
    result.assert_outcomes(passed=1, skipped=len(GENERATED))
    outcomes = outcomes_by_test(result)
    assert outcomes["test_mine"] == "passed"
    assert {name for name, o in outcomes.items() if o == "skipped"} == {
        f"{name}[no-lens-models]" for name in GENERATED
    }
    skip_lines = [line for line in result.outlines if line.startswith("SKIPPED")]
    # One summary line for all six, and the reason says what to pass.
    assert len(skip_lines) == 1, skip_lines
    assert skip_lines[0].startswith(f"SKIPPED [{len(GENERATED)}] ")
    assert skip_lines[0].endswith(
        "no --lens-models (or lens_models ini) given: lens golden tests not run"
    )
    assert "lenscheck: models=" not in result.stdout.str()  # no header without models


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
