"""ini lens_tolerances (per-class overrides) and lens_collapse_allowance (MODEL=K)."""

from __future__ import annotations

from typing import Any

import pytest
from _plugin_helpers import GENERATED, LensProject, failed_models


def entropy_plus(delta: float):  # type: ignore[no-untyped-def]
    def edit(data: dict[str, Any]) -> None:
        data["prompts"]["capital-de"]["next_token"]["entropy"][2] += delta

    return edit


def test_loosened_entropy_tolerance_accepts_a_drift(lens_project: LensProject) -> None:
    lens_project.copy_golden("synthetic-llama")
    lens_project.edit_golden("synthetic-llama", entropy_plus(0.5))

    default = lens_project.run("--lens-models=synthetic-llama")
    assert failed_models(default) == {"synthetic-llama": {"test_trajectory"}}
    assert "|Δ| 0.5 > tol 0.0004" in default.stdout.str()

    # An override for another class does not apply to this run's class.
    lens_project.ini("lens_tolerances =", "    cuda-float16 entropy=1.0")
    assert failed_models(lens_project.run("--lens-models=synthetic-llama")) == {
        "synthetic-llama": {"test_trajectory"}
    }

    lens_project.ini("lens_tolerances =", "    cpu-float32 entropy=0.6 p_top1=1e-3")
    loosened = lens_project.run("--lens-models=synthetic-llama")
    loosened.assert_outcomes(passed=len(GENERATED))


def test_tightened_entropy_tolerance_flags_a_tiny_drift(lens_project: LensProject) -> None:
    """5e-5 bit is within the default 4e-4; an override of 1e-5 catches it (and is still
    five times the largest difference between 1- and 2-thread runs, 2e-6, measured)."""
    lens_project.copy_golden("synthetic-llama")
    lens_project.edit_golden("synthetic-llama", entropy_plus(5e-5))
    lens_project.run("--lens-models=synthetic-llama").assert_outcomes(passed=len(GENERATED))

    lens_project.ini("lens_tolerances = cpu-float32 entropy=1e-5")
    tight = lens_project.run("--lens-models=synthetic-llama")
    assert failed_models(tight) == {"synthetic-llama": {"test_trajectory"}}
    out = tight.stdout.str()
    assert "trajectory: prompt capital-de layer 2 entropy:" in out
    assert "> tol 1e-05" in out
    assert "compared with cpu-float32 tolerances" in out


@pytest.mark.parametrize(
    "line",
    [
        "entropy=1e-3",
        "cpu-float32",
        "cpu-float32 entropy",
        "cpu-float32 speed=1",
        "cpu-float32 entropy=x",
    ],
)
def test_bad_tolerance_line_is_a_usage_error(lens_project: LensProject, line: str) -> None:
    lens_project.ini(f"lens_tolerances = {line}")
    result = lens_project.run("--lens-models=synthetic-llama")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "lens_tolerances: expected 'CLASS FIELD=VALUE' with FIELD one of " in err
    assert (
        "divergence_rel, entropy, entropy_cap, final_prob, jaccard, kl_consistency, logit, "
        "near_tie, outlier_fraction, p_cap, p_top1, rank_rel, raw_divergence_rel, "
        "raw_entropy, raw_jaccard, raw_p" in err
    )
    assert repr(line) in err


#: The synthetic family whose committed golden has a copy-collapse layer (L_copy = 1).
COPIES = "synthetic-opt-postnorm"


def l_copy_plus_one(data: dict[str, Any]) -> None:
    collapse = data["prompts"]["capital-de"]["collapse"]
    assert collapse["L_copy"] == 1  # the committed synthetic-opt-postnorm golden
    collapse["L_copy"] = 2


def test_collapse_allowance_per_model(lens_project: LensProject) -> None:
    lens_project.copy_golden(COPIES)
    lens_project.edit_golden(COPIES, l_copy_plus_one)

    default = lens_project.run(f"--lens-models={COPIES}")
    assert failed_models(default) == {COPIES: {"test_collapse"}}
    assert (
        "collapse: prompt capital-de L_copy: golden 2 vs run 1 |Δ| 1 > tol 0"
        in default.stdout.str()
    )

    # Another model's allowance does not apply.
    lens_project.ini("lens_collapse_allowance = synthetic-llama=3")
    assert failed_models(lens_project.run(f"--lens-models={COPIES}")) == {COPIES: {"test_collapse"}}

    lens_project.ini("lens_collapse_allowance =", "    synthetic-llama=3", f"    {COPIES} = 1")
    lens_project.run(f"--lens-models={COPIES}").assert_outcomes(passed=len(GENERATED))


def test_collapse_allowance_is_a_bound_not_a_pass(lens_project: LensProject) -> None:
    """Allowance 1 accepts |Δ| = 1, not 2."""

    def l_copy_plus_two(data: dict[str, Any]) -> None:
        data["prompts"]["capital-de"]["collapse"]["L_copy"] = 3

    lens_project.copy_golden(COPIES)
    lens_project.edit_golden(COPIES, l_copy_plus_two)
    lens_project.ini(f"lens_collapse_allowance = {COPIES}=1")
    result = lens_project.run(f"--lens-models={COPIES}")
    assert failed_models(result) == {COPIES: {"test_collapse"}}
    assert (
        "collapse: prompt capital-de L_copy: golden 3 vs run 1 |Δ| 2 > tol 1" in result.stdout.str()
    )


@pytest.mark.parametrize("line", ["synthetic-gpt2", "synthetic-gpt2=one", "synthetic-gpt2=-1"])
def test_bad_allowance_line_is_a_usage_error(lens_project: LensProject, line: str) -> None:
    lens_project.ini(f"lens_collapse_allowance = {line}")
    result = lens_project.run("--lens-models=synthetic-gpt2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: lens_collapse_allowance: expected 'MODEL=K', got {line!r}"]
    )
