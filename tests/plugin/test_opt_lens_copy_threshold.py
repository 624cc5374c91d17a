"""--lens-copy-threshold, --lens-copy-margin (ini twins): the copy rule's parameters, pinned
as facts of the golden and carried by the re-bless command."""

from __future__ import annotations

import pytest
from _plugin_helpers import GENERATED, LensProject, failed_models

from lenscheck.golden.store import read_golden

MODEL = "synthetic-opt-postnorm"  # copy-collapses from layer 1 at the default rule


def test_a_stricter_rule_moves_the_flags_and_is_a_fact_of_the_golden(
    lens_project: LensProject,
) -> None:
    lens_project.copy_golden(MODEL)
    default = read_golden(lens_project.golden(MODEL))
    assert default["facts"]["copy_threshold"] == 0.9
    assert default["prompts"]["capital-de"]["collapse"]["L_copy"] == 1
    strict = ("--lens-copy-threshold=0.0", "--lens-copy-margin=0.0")  # any prompt top-1 copies
    result = lens_project.run(f"--lens-models={MODEL}", *strict)
    # The facts say the rule differs; the flags and L_copy move with it (entropy rule aside).
    assert failed_models(result) == {MODEL: {"test_schema", "test_collapse"}}
    out = result.stdout.str()
    assert "schema: fact copy_threshold: golden 0.9 vs run 0" in out
    assert (
        f"re-bless: pytest --lens-models={MODEL} --lens-copy-threshold=0.0 "
        "--lens-copy-margin=0.0 --snapshot-update"
    ) in out


def test_the_ini_twins_give_the_same_run(lens_project: LensProject) -> None:
    lens_project.ini("lens_copy_threshold = 0.5", "lens_copy_margin = 0.01")
    lens_project.run(f"--lens-models={MODEL}", "--snapshot-update").assert_outcomes(
        passed=len(GENERATED)
    )
    facts = read_golden(lens_project.golden(MODEL))["facts"]
    assert (facts["copy_threshold"], facts["copy_margin"]) == (0.5, 0.01)
    lens_project.ini()
    flags = ("--lens-copy-threshold=0.5", "--lens-copy-margin=0.01")
    lens_project.run(f"--lens-models={MODEL}", *flags).assert_outcomes(passed=len(GENERATED))


@pytest.mark.parametrize("value", ["1.5", "-0.1", "most"])
def test_a_value_outside_zero_to_one_is_a_usage_error(
    lens_project: LensProject, value: str
) -> None:
    result = lens_project.run(f"--lens-models={MODEL}", f"--lens-copy-margin={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    shown = repr(value) if value == "most" else value
    result.stderr.fnmatch_lines(
        [
            "ERROR: lenscheck: --lens-copy-margin (ini: lens_copy_margin): expected a number "
            f"in [[]0, 1[]], got {shown}"
        ]
    )
