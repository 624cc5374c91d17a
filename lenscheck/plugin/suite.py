"""The generated lens tests, parametrized by model (``--lens-models``).

One test per value class of the output files: each value is compared by exactly one
test, so one drift fails one test. Each test reads the model's single shared run (the
first test of a model pays for it) and reports per prompt of the suite.
"""

from __future__ import annotations

from typing import Any

from lenscheck.golden.tolerances import tolerances_for
from lenscheck.plugin.session import GoldenHelper, LensRun
from lenscheck.plugin.settings import LensSettings

__all__: list[str] = []


def test_golden_file(lens_golden: GoldenHelper, snapshot: Any) -> None:
    """The golden file: present, readable, current, one entry per prompt with the same
    text, answer and probes; created and re-blessed by --snapshot-update (syrupy)."""
    lens_golden.check_file(snapshot)


def test_schema(lens_golden: GoldenHelper) -> None:
    """CSV headers and dialect, the JSON key tree, model stats and the lens' facts (norm
    classes, fixes, configuration) equal the golden's exactly."""
    lens_golden.check("schema")


def test_tokenization(lens_golden: GoldenHelper) -> None:
    """Each prompt's token ids and texts, BOS, and the answer's ids are unchanged."""
    lens_golden.check("tokenization")


def test_collapse(lens_golden: GoldenHelper) -> None:
    """L_copy, L_copy_H, L_semantic, delta_layers (within the model's allowance) and every
    layer's copy_collapse, entropy_collapse and is_answer flag."""
    lens_golden.check("collapse")


def test_trajectory(lens_golden: GoldenHelper) -> None:
    """The pure next-token CSV: per layer top-1 (near-ties only reported), p(top-1) and
    entropy within tolerance."""
    lens_golden.check("trajectory")


def test_records(lens_golden: GoldenHelper) -> None:
    """The records CSV: every (layer, position) cell's top-1, p(top-1) and entropy."""
    lens_golden.check("records")


def test_probes(lens_golden: GoldenHelper) -> None:
    """Every probe prompt's top-1, p(top-1) and entropy."""
    lens_golden.check("probes")


def test_final_prediction(lens_golden: GoldenHelper) -> None:
    """The model's own top-5 and entropy, and the temperature exploration."""
    lens_golden.check("final_prediction")


def test_decoding(lens_golden: GoldenHelper) -> None:
    """The decoding-point ablation: per point (next-ln1, final, raw) L_semantic and every
    layer's next-token top-1, entropy, p(answer) and the answer's rank."""
    lens_golden.check("decoding")


def test_invariants(lens_run: LensRun, lens_settings: LensSettings, lens_kind: str) -> None:
    """Recomputed from tensors, not read from what the lens wrote: the lens at the last
    layer reproduces the model's own logits, each re-applied norm equals its module, listed
    probabilities + rest_mass == 1, and the JSON's consistency diagnostic is the truth."""
    __tracebackhide__ = True
    # Imported here: invariants imports torch, and every pytest session that has the plugin
    # imports this module (to find out whether it collects it).
    from lenscheck.plugin.invariants import check_invariants

    cls = lens_run.golden_class
    tol, _ = tolerances_for(cls, cls, lens_settings.tolerance_overrides)
    problems = check_invariants(lens_run.for_lens(lens_kind), kl_tolerance=tol.kl_consistency)
    assert not problems, f"{lens_run.model}: " + "; ".join(problems)


def test_rules(lens_run: LensRun, lens_kind: str) -> None:
    """Re-derived by the plugin with code of its own, not read from what the lens wrote:
    every next-token row's copy_collapse, entropy_collapse and is_answer from the values
    it is defined on and the thresholds the run recorded, the collapse layers from the
    flags, and the writer's rule on rows just above and below every boundary of the rule
    (so a weakened rule shows on any model)."""
    __tracebackhide__ = True
    from lenscheck.plugin.rules import check_rules

    problems = check_rules(lens_run.for_lens(lens_kind))
    assert not problems, f"{lens_run.model}: " + "; ".join(problems)


def test_metrics(lens_golden: GoldenHelper) -> None:
    """The extended schema's measurements: every extended column of the pure next-token
    CSV, every column of the rawlens sidecar, the milestones and the raw-vs-norm summary,
    each within its declared tolerance class (lenscheck.metrics.table)."""
    lens_golden.check("metrics")


def test_measurements(lens_run: LensRun, lens_kind: str) -> None:
    """The extended schema's measurements re-derived by the plugin with code of its own:
    KL >= 0 (~0 at the last layer under the logit lens), rank 1 exactly when the answer is
    top-1, p_top5 >= p_top1 >= p_answer, Jaccard in [0, 1], the copy flags, milestones and
    raw-vs-norm summary from the columns they are defined on, and, under the logit lens,
    every value recomputed from a fresh forward pass."""
    __tracebackhide__ = True
    from lenscheck.plugin.measures import check_measurements

    problems = check_measurements(lens_run.for_lens(lens_kind))
    assert not problems, f"{lens_run.model}: " + "; ".join(problems)
