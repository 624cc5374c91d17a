"""The generated lens tests, parametrized by model (``--lens-models``).

Each test reads the model's single shared run; the first test of a model pays
for the run, the others reuse it.
"""

from __future__ import annotations

from typing import Any

from lenscheck.plugin.session import GoldenHelper, LensRun

__all__: list[str] = []


def test_schema(lens_golden: GoldenHelper) -> None:
    """CSV headers, dialect and the JSON key tree equal the golden's exactly."""
    lens_golden.check(("schema", "model_stats"))


def test_collapse(lens_golden: GoldenHelper) -> None:
    """L_copy, L_copy_H, L_semantic and delta_layers equal (within the model's allowance)."""
    lens_golden.check(("collapse",))


def test_trajectory(lens_golden: GoldenHelper) -> None:
    """Per layer: next-token top-1 (near-ties only reported), entropy and p_top1 in tolerance."""
    lens_golden.check(("trajectory",))


def test_final_prediction(lens_golden: GoldenHelper) -> None:
    """The model's own top-5 and the tokenization are unchanged."""
    lens_golden.check(("final_prediction", "tokenization"))


def test_golden_file(lens_golden: GoldenHelper, snapshot: Any) -> None:
    """The golden file itself (syrupy): created and re-blessed by --snapshot-update."""
    lens_golden.assert_snapshot(snapshot)


def test_invariants(lens_run: LensRun) -> None:
    """Last-layer consistency, norm re-application == module, probabilities sum to 1."""
    __tracebackhide__ = True
    from lenscheck.plugin.invariants import check_invariants

    problems = check_invariants(lens_run)
    assert not problems, f"{lens_run.model}: " + "; ".join(problems)
