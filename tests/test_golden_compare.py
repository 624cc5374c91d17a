"""lenscheck.golden.compare: every value class, its tolerance rule, and prompt identity.

The documents are the committed synthetic-llama golden (the shared ``golden``/``run``
fixtures of conftest.py: real structure, 4 layers x 17 positions, one prompt) edited by
hand. Where a test sits exactly at a tolerance, values and tolerances are dyadic so the
boundary is exact in binary.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import pytest

from lenscheck.golden.compare import (
    SECTIONS,
    Drift,
    DriftReport,
    _key_paths,
    compare_golden,
    pair_prompts,
)
from lenscheck.golden.tolerances import DEFAULT_TOLERANCES, Tolerances

FP32 = DEFAULT_TOLERANCES["cpu-float32"]
#: Dyadic tolerances: "at the tolerance" is exact.
TOL = Tolerances(
    entropy=0.25, p_top1=0.125, final_prob=0.0625, near_tie=0.5, kl_consistency=1e-6, rank_rel=0.5
)
PID = "capital-de"


def entry(doc: dict[str, Any]) -> dict[str, Any]:
    """The one prompt's entry of a document."""
    return doc["prompts"][PID]  # type: ignore[no-any-return]


def where(report: DriftReport) -> list[tuple[str, str, int | None, int | None]]:
    return [(d.section, d.metric, d.layer, d.pos) for d in report.drifts]


def cmp(golden: dict[str, Any], run: dict[str, Any], **kw: Any) -> DriftReport:
    return compare_golden(golden, run, kw.pop("tol", TOL), **kw)


# ----------------------------------------------------------------------- the basics


def test_equal_documents_are_ok_and_count_what_they_compared(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    report = compare_golden(golden, run, FP32, tolerance_note="cpu-float32 tolerances")
    assert report.ok and report.identity_ok
    assert report.drifts == [] and report.near_ties == []
    assert report.first_divergence() is None
    assert (report.model, report.golden_class, report.run_class) == (
        "synthetic-llama",
        "cpu-float32",
        "cpu-float32",
    )
    assert report.golden is golden and report.observed is run
    # 4 layers x 16 positions x (top1, entropy, p_top1, the top-k order) + every top-k
    # probability (3 verbose positions list 20, the others 5); 4 layers x (index + 3 metrics
    # + the top-5 order + 5 probabilities).
    assert report.compared["records"] == 4 * 16 * 4 + 4 * (13 * 5 + 3 * 20)
    assert report.compared["trajectory"] == 4 * (4 + 1 + 5)
    # 21 extended columns and 21 rawlens columns per layer, 11 milestones, 5 summary values.
    assert report.compared["metrics"] == 4 * (21 + 21) + 11 + 5
    assert report.compared["probes"] == 14 * 3
    # 4 collapse layers, 3 flags x 4 layers, the embedding echo (top1, p_top1, 4 facts).
    assert report.compared["collapse"] == 4 + 3 * 4 + 6
    # prepend_bos, bos_policy, tokenizer_adds_bos, input_ids, tokens, answer_ids, and the
    # other BOS policy's ids, policy, top-1 and p(top-1).
    assert report.compared["tokenization"] == 6 + 4
    # final: entropy, top5 tokens, 5 probabilities; 2 temperatures x 3.
    assert report.compared["final_prediction"] == 7 + 6
    # onset flag; per point L_semantic + 4 layers x (top1, entropy, p_top1, p_answer, rank).
    assert report.compared["decoding"] == 1 + 3 * (1 + 4 * 5)
    assert set(report.compared) == set(SECTIONS)
    assert set(report.max_delta.values()) == {0.0}  # every number compared was equal


def test_max_delta_per_section(golden: dict[str, Any], run: dict[str, Any]) -> None:
    entry(run)["records"]["entropy"][1][2] += 0.125
    entry(run)["probes"]["p_top1"][0] += 0.0625
    report = cmp(golden, run)
    assert report.max_delta["records"] == pytest.approx(0.125)
    assert report.max_delta["probes"] == pytest.approx(0.0625)
    assert report.max_delta["trajectory"] == 0.0


def test_drift_delta_and_where() -> None:
    assert Drift("s", "m", 1, 3.5).delta == 2.5
    assert Drift("s", "m", 3.5, 1).delta == 2.5
    assert Drift("s", "m", "a", "b").delta is None
    assert Drift("s", "m", None, 3).delta is None
    assert Drift("s", "m", True, False).delta is None  # flags are not numbers
    d = Drift("s", "m", 1, 2)
    assert (d.tolerance, d.layer, d.prompt, d.pos, d.where) == (0, None, None, None, "")
    assert Drift("s", "m", 1, 2, 0, 4, "p", 7).where == "prompt p layer 4 pos 7"
    assert Drift("s", "m", 1, 2, 0, None, "p").where == "prompt p"


def test_first_divergence_is_the_lowest_layer_then_position() -> None:
    flat = Drift("collapse", "L_copy", 1, 2)
    late = Drift("records", "entropy", 1.0, 2.0, 0.1, 3, "p", 0)
    early_far = Drift("records", "entropy", 1.0, 2.0, 0.1, 1, "p", 9)
    early_near = Drift("records", "p_top1", 0.1, 0.5, 0.1, 1, "p", 2)
    row = Drift("trajectory", "entropy", 1.0, 2.0, 0.1, 1, "p")  # a row comes before cells
    report = DriftReport("m", "a", "b", "", drifts=[flat, late, early_far, early_near, row])
    assert report.first_divergence() is row
    assert report.first_divergence([flat, late, early_far]) is early_far
    assert report.section("records") == [late, early_far, early_near]
    assert report.section("schema") == []
    assert DriftReport("m", "a", "b", "", drifts=[flat]).first_divergence() is flat
    cell_0 = Drift("records", "entropy", 1.0, 2.0, 0.1, 1, "p", 0)
    assert report.first_divergence([cell_0, row]) is row  # a row sorts before position 0
    assert report.first_divergence([]) is None
    assert DriftReport("m", "a", "b", "").first_divergence() is None


# ------------------------------------------------------------------------- records


@pytest.mark.parametrize(
    ("delta", "drifts"),
    [(0.5, [("records", "entropy", 2, 5)]), (-0.375, [("records", "entropy", 2, 5)]), (0.25, [])],
    ids=["far", "just-beyond", "at-the-tolerance"],
)
def test_every_records_cell_entropy_has_a_tolerance(
    golden: dict[str, Any], run: dict[str, Any], delta: float, drifts: list[Any]
) -> None:
    entry(golden)["records"]["entropy"][2][5] = 4.0
    entry(run)["records"]["entropy"][2][5] = 4.0 + delta
    report = cmp(golden, run)
    assert where(report) == drifts
    if drifts:
        (drift,) = report.drifts
        assert (drift.golden, drift.observed, drift.tolerance, drift.prompt) == (
            4.0,
            4.0 + delta,
            0.25,
            PID,
        )


def test_records_top1_change_is_a_near_tie_or_drift_by_the_goldens_gap(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    cells = entry(golden)["records"]
    cells["p_top1"][1][3], cells["p_top2"][1][3] = 0.5, 0.125  # gap 0.375 < 0.5: near-tie
    cells["p_top1"][1][4], cells["p_top2"][1][4] = 0.75, 0.25  # gap 0.5, not below: drift
    obs = entry(run)["records"]
    obs["p_top1"][1][3], obs["p_top1"][1][4] = 0.5, 0.75
    obs["top1"][1][3] = obs["top1"][1][4] = " other"
    obs["p_top2"][1][4] = 0.0  # the run's own gap does not matter
    report = cmp(golden, run)
    assert [(d.metric, d.layer, d.pos, d.observed) for d in report.near_ties] == [
        ("top1", 1, 3, " other")
    ]
    assert where(report) == [("records", "top1", 1, 4)]


def test_records_shape_change_is_one_drift(golden: dict[str, Any], run: dict[str, Any]) -> None:
    for metric in ("top1", "p_top1", "p_top2", "entropy"):
        entry(run)["records"][metric].append(entry(run)["records"][metric][-1])
    report = cmp(golden, run, sections=("records",))
    assert [(d.metric, d.golden, d.observed) for d in report.drifts] == [
        ("layers x positions", (4, 16), (5, 16))
    ]


def test_records_missing_on_one_side(golden: dict[str, Any], run: dict[str, Any]) -> None:
    entry(run)["records"] = None
    assert where(cmp(golden, run, sections=("records",))) == [
        ("records", "records CSV present", None, None)
    ]
    assert cmp(golden, run, sections=("records",), lenient=True).ok


# ------------------------------------------------------------------------ trajectory


def test_trajectory_metrics_tolerances_and_layer_index(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    g, o = entry(golden)["next_token"], entry(run)["next_token"]
    g["entropy"][0], o["entropy"][0] = 2.0, 2.25  # at the tolerance: fine
    g["p_top1"][0], o["p_top1"][0] = 0.5, 0.625  # at the tolerance: fine
    g["entropy"][1], o["entropy"][1] = 1.5, 1.0
    g["p_top1"][2], o["p_top1"][2] = 0.75, 1.0
    o["layer"][3] = 5
    report = cmp(golden, run, sections=("trajectory",))
    assert report.drifts == [
        Drift("trajectory", "layer index", 3, 5, 0, 3, PID),
        Drift("trajectory", "entropy", 1.5, 1.0, 0.25, 1, PID),
        Drift("trajectory", "p_top1", 0.75, 1.0, 0.125, 2, PID),
    ]


def test_trajectory_layer_count(golden: dict[str, Any], run: dict[str, Any]) -> None:
    for values in entry(run)["next_token"].values():
        values.pop()
    report = cmp(golden, run, sections=("trajectory",))
    assert report.drifts == [Drift("trajectory", "layer count", 4, 3, 0, None, PID)]


def test_nan_is_always_drift(golden: dict[str, Any], run: dict[str, Any]) -> None:
    entry(run)["next_token"]["entropy"][0] = math.nan
    huge = Tolerances(1e9, 1, 1, 1, 1)
    (drift,) = compare_golden(golden, run, huge, sections=("trajectory",)).drifts
    assert (drift.metric, drift.layer) == ("entropy", 0) and math.isnan(drift.observed)


# -------------------------------------------------------------------------- collapse


@pytest.mark.parametrize(
    ("golden_l", "run_l", "allowance", "ok"),
    [
        (3, 4, 0, False),
        (3, 4, 1, True),
        (3, 2, 1, True),
        (3, 5, 1, False),
        (3, 1, 1, False),
        (None, 0, 5, False),  # appearing or vanishing is never within an allowance
        (0, None, 5, False),
        (None, None, 0, True),
    ],
)
def test_collapse_allowance(
    golden: dict[str, Any],
    run: dict[str, Any],
    golden_l: int | None,
    run_l: int | None,
    allowance: int,
    ok: bool,
) -> None:
    entry(golden)["collapse"]["L_semantic"] = golden_l
    entry(run)["collapse"]["L_semantic"] = run_l
    report = cmp(golden, run, collapse_allowance=allowance)
    assert report.ok is ok
    assert report.drifts == (
        [] if ok else [Drift("collapse", "L_semantic", golden_l, run_l, allowance, None, PID)]
    )


def test_every_layers_flags_are_exact(golden: dict[str, Any], run: dict[str, Any]) -> None:
    flags = entry(run)["flags"]
    flags["is_answer"][2] = True  # golden gap p1 - p2 = 0.47: not a near-tie
    flags["entropy_collapse"][3] = True  # golden entropy 6.4 bits: far from 1
    report = cmp(golden, run, tol=FP32)
    assert report.drifts == [
        Drift("collapse", "entropy_collapse", False, True, 0, 3, PID),
        Drift("collapse", "is_answer", False, True, 0, 2, PID),
    ]
    flags["copy_collapse"].pop()
    assert Drift("collapse", "copy_collapse layer count", 4, 3, 0, None, PID) in (
        cmp(golden, run).drifts
    )


def test_a_flag_flip_at_its_threshold_is_a_near_tie(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    """Rounding can flip a flag whose golden value sits at the rule's threshold; the
    collapse layer it moves is then a near-tie too."""
    for doc in (golden, run):
        rows = entry(doc)["next_token"]
        rows["entropy"][1] = 1.125  # within 0.25 of the 1-bit rule
        rows["p_top1"][2], rows["p_top2"][2] = 0.875, 0.0  # within 0.125 of threshold 0.9
        doc["facts"]["copy_threshold"], doc["facts"]["copy_margin"] = 0.9, 0.05
    flags = entry(run)["flags"]
    flags["entropy_collapse"][1] = True
    flags["copy_collapse"][2] = True
    entry(run)["collapse"].update(L_copy_H=1, L_copy=2)
    report = cmp(golden, run)
    assert report.ok
    assert report.near_ties == [
        Drift("collapse", "copy_collapse", False, True, 0, 2, PID),
        Drift("collapse", "entropy_collapse", False, True, 0, 1, PID),
        Drift("collapse", "L_copy", None, 2, 0, None, PID),
        Drift("collapse", "L_copy_H", None, 1, 0, None, PID),
    ]
    # 4 collapse layers, 3 flags x 4 layers, the embedding echo (top1, p_top1, 4 facts).
    assert report.compared["collapse"] == 4 + 3 * 4 + 6
    # prepend_bos, bos_policy, tokenizer_adds_bos, input_ids, tokens, answer_ids, and the
    # other BOS policy's ids, policy, top-1 and p(top-1).
    assert report.compared["tokenization"] == 6 + 4  # near-ties are counted as compared
    # The same flips under float32's tolerances are drift.
    assert {d.metric for d in cmp(golden, run, tol=FP32).drifts} == {
        "copy_collapse",
        "entropy_collapse",
        "L_copy",
        "L_copy_H",
    }


def _flip_at(
    golden: dict[str, Any],
    run: dict[str, Any],
    flag: str,
    values: dict[str, float | None],
    facts: tuple[float | None, float | None] = (0.875, 0.0625),
) -> DriftReport:
    """Flip ``flag`` at layer 2 of the run, the golden's row there holding ``values``."""
    for doc in (golden, run):
        rows = entry(doc)["next_token"]
        for metric, value in values.items():
            rows[metric][2] = value
        doc["facts"]["copy_threshold"], doc["facts"]["copy_margin"] = facts
    entry(run)["flags"][flag][2] = not entry(run)["flags"][flag][2]
    return cmp(golden, run, sections=("collapse",))


FAR = {"entropy": 6.0, "p_top1": 0.5, "p_top2": 0.0}  # far from every rule (TOL, facts)


@pytest.mark.parametrize(
    ("flag", "values", "near"),
    [
        # entropy collapse: |entropy - 1 bit| <= TOL.entropy (0.25), on either side
        ("entropy_collapse", {"entropy": 1.25}, True),
        ("entropy_collapse", {"entropy": 0.75}, True),
        ("entropy_collapse", {"entropy": 1.375}, False),
        ("entropy_collapse", {"entropy": 0.625}, False),
        # is_answer: the golden's top-1/top-2 gap below TOL.near_tie (0.5), strictly
        ("is_answer", {"p_top1": 0.625, "p_top2": 0.25}, True),
        ("is_answer", {"p_top1": 0.75, "p_top2": 0.25}, False),
        ("is_answer", {"p_top1": 0.875, "p_top2": 0.25}, False),
        # copy collapse: the entropy rule alone, the threshold (0.875) alone, the margin alone
        ("copy_collapse", {"entropy": 1.25}, True),
        ("copy_collapse", {"entropy": 0.625}, False),
        ("copy_collapse", {"p_top1": 0.75, "p_top2": 0.0}, True),
        ("copy_collapse", {"p_top1": 1.0, "p_top2": 0.5}, True),
        ("copy_collapse", {"p_top1": 0.625, "p_top2": 0.0}, False),
        ("copy_collapse", {"p_top1": 0.5, "p_top2": 0.3125}, True),  # gap 0.1875 = margin + tol
        ("copy_collapse", {"p_top1": 0.5, "p_top2": 0.5}, True),  # gap 0 = margin - 0.0625
        ("copy_collapse", {"p_top1": 0.5, "p_top2": 0.25}, False),  # gap 0.25
        # a golden that lacks a value decides nothing: the flip is drift
        ("copy_collapse", {"entropy": 1.0, "p_top2": None}, False),
        ("entropy_collapse", {"entropy": None}, False),
    ],
)
def test_which_golden_values_make_a_flag_flip_a_near_tie(
    golden: dict[str, Any], run: dict[str, Any], flag: str, values: dict[str, Any], near: bool
) -> None:
    report = _flip_at(golden, run, flag, {**FAR, **values})
    flips = [(d.section, d.metric, d.layer) for d in (report.near_ties if near else report.drifts)]
    assert flips == [("collapse", flag, 2)]
    assert report.ok is near
    # 4 collapse layers, 3 flags x 4 layers, the embedding echo (top1, p_top1, 4 facts).
    assert report.compared["collapse"] == 4 + 3 * 4 + 6


def test_copy_rules_without_threshold_or_margin_facts_use_the_entropy_rule_only(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    fresh = copy.deepcopy(golden), copy.deepcopy(run)
    at_threshold = {**FAR, "p_top1": 0.875, "p_top2": 0.8125}  # gap = margin, p1 = threshold
    report = _flip_at(golden, run, "copy_collapse", at_threshold, facts=(None, None))
    assert [d.metric for d in report.drifts] == ["copy_collapse"]
    report = _flip_at(*fresh, "copy_collapse", {**FAR, "entropy": 1.0}, facts=(None, None))
    assert [d.metric for d in report.near_ties] == ["copy_collapse"]


# --------------------------------------------------------------------------- outliers

#: TOL plus an outlier allowance: 1/8 of a section's values, entropy up to 1, p up to 0.5.
OUT = dataclasses.replace(TOL, outlier_fraction=0.125, entropy_cap=1.0, p_cap=0.5)


@pytest.mark.parametrize(
    ("metric", "delta", "outcome"),
    [
        ("entropy", 0.5, "outlier"),
        ("entropy", 1.0, "outlier"),  # at the cap
        ("entropy", 1.5, "drift"),
        ("p_top1", -0.25, "outlier"),
        ("p_top1", -0.5, "outlier"),
        ("p_top1", -0.625, "drift"),
    ],
)
def test_beyond_tolerance_within_the_cap_is_an_outlier(
    golden: dict[str, Any], run: dict[str, Any], metric: str, delta: float, outcome: str
) -> None:
    rows = entry(run)["next_token"]
    rows[metric][1] += delta
    report = cmp(golden, run, tol=OUT, sections=("trajectory",))
    found = (
        [(d.metric, d.layer) for d in report.outliers],
        [(d.metric, d.layer) for d in report.drifts],
    )
    expected = [(metric, 1)]
    assert found == ((expected, []) if outcome == "outlier" else ([], expected))
    assert report.ok is (outcome == "outlier")
    # Without an allowance the same value is drift.
    assert [
        (d.metric, d.layer) for d in cmp(golden, run, sections=("trajectory",)).drifts
    ] == expected


def test_a_changed_top1_beyond_the_near_tie_gap_is_an_outlier_candidate(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    rows = entry(run)["next_token"]
    rows["top1"][3] = "something else"
    tie = dataclasses.replace(OUT, near_tie=0.0)  # no gap is a near-tie
    report = cmp(golden, run, tol=tie, sections=("trajectory",))
    assert [(d.metric, d.layer) for d in report.outliers] == [("top1", 3)]
    assert report.ok and report.near_ties == []
    strict = dataclasses.replace(tie, outlier_fraction=0.0)
    assert [d.layer for d in cmp(golden, run, tol=strict, sections=("trajectory",)).drifts] == [3]


@pytest.mark.parametrize(("n", "ok"), [(2, True), (3, False)])
def test_more_outliers_than_the_allowance_are_all_drift(
    golden: dict[str, Any], run: dict[str, Any], n: int, ok: bool
) -> None:
    """The trajectory compares 16 values (its top-k aside): 1/8 of them (2) may be outliers,
    a third is not."""
    for doc in (golden, run):
        del entry(doc)["next_token"]["topk"]
    for layer in range(n):
        entry(run)["next_token"]["entropy"][layer] += 0.5
    report = cmp(golden, run, tol=OUT, sections=("trajectory",))
    assert report.compared["trajectory"] == 16
    moved = [("entropy", layer) for layer in range(n)]
    assert [(d.metric, d.layer) for d in (report.outliers if ok else report.drifts)] == moved
    assert (report.drifts == []) is ok and (report.outliers == []) is not ok


# ---------------------------------------------------------------- probes and final


def test_each_probe_is_compared_and_named(golden: dict[str, Any], run: dict[str, Any]) -> None:
    probes = entry(run)["probes"]
    probes["entropy"][3] += 1.0
    probes["top1"][5] = " elsewhere"
    gp = entry(golden)["probes"]
    gp["p_top1"][5], gp["p_top2"][5] = 0.75, 0.0  # a clear winner: no near-tie
    entry(run)["probes"]["p_top1"][5] = 0.75
    report = cmp(golden, run, sections=("probes",))
    names = golden["prompts"][PID]["probes"]["prompt"]
    assert [d.metric for d in report.drifts] == [
        f"probe {names[3]!r} entropy",
        f"probe {names[5]!r} top1",
    ]
    assert all(d.layer is None and d.prompt == PID for d in report.drifts)


def test_changed_probe_prompts_are_one_drift(golden: dict[str, Any], run: dict[str, Any]) -> None:
    entry(run)["probes"]["prompt"][0] = "Something else"
    report = cmp(golden, run, sections=("probes",))
    assert [(d.metric, d.observed[0]) for d in report.drifts] == [
        ("probe prompts", "Something else")
    ]


def test_final_prediction_entropy_probabilities_and_tokens(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    final = {"entropy": 1.0, "top5": [["x", 0.5], ["y", 0.25]]}
    entry(golden)["final_prediction"] = copy.deepcopy(final)
    entry(run)["final_prediction"] = {"entropy": 1.25, "top5": [["x", 0.5625], ["y", 0.1875]]}
    assert cmp(golden, run, sections=("final_prediction",)).ok  # both at the tolerance
    entry(run)["final_prediction"] = {"entropy": 1.5, "top5": [["x", 0.5], ["y", 0.375]]}
    assert cmp(golden, run, sections=("final_prediction",)).drifts == [
        Drift("final_prediction", "entropy", 1.0, 1.5, 0.25, None, PID),
        Drift("final_prediction", "p(top2 'y')", 0.25, 0.375, 0.0625, None, PID),
    ]
    # A swap of tokens whose golden gap (0.5 - 0.25) is under near_tie (0.5): a near-tie;
    # their probabilities are still compared token by token.
    entry(run)["final_prediction"] = {"entropy": 1.0, "top5": [["y", 0.3125], ["x", 0.4375]]}
    report = cmp(golden, run, sections=("final_prediction",))
    assert report.ok
    assert [(d.metric, d.golden, d.observed) for d in report.near_ties] == [
        ("top5 tokens", ["x", "y"], ["y", "x"])
    ]
    # A clear winner replaced: drift, with the near-tie gap as the tolerance.
    entry(golden)["final_prediction"]["top5"] = [["x", 0.875], ["y", 0.0625]]
    entry(run)["final_prediction"] = {"entropy": 1.0, "top5": [["z", 0.5], ["y", 0.0625]]}
    assert cmp(golden, run, sections=("final_prediction",)).drifts == [
        Drift("final_prediction", "top5 tokens", ["x", "y"], ["z", "y"], 0.5, None, PID)
    ]


@pytest.mark.parametrize(
    ("golden_probs", "observed", "near_tie"),
    [
        # Positions 3 and 4 swap; golden 0.0625 - 0.03125 under the gap of 0.0625.
        ((0.5, 0.25, 0.125, 0.0625, 0.03125), "abced", True),
        # Positions 1 and 2 swap, 0.25 - 0.125 apart: drift.
        ((0.5, 0.25, 0.125, 0.0625, 0.03125), "acbde", False),
        # ...also when each has a close neighbour on its other side: the swapped pair counts.
        ((0.375, 0.359375, 0.125, 0.109375, 0.09375), "acbde", False),
        # A rotation of the last three spans 0.125 - 0.09375...
        ((0.375, 0.359375, 0.125, 0.109375, 0.09375), "abecd", True),
        # ...or 0.125 - 0.03125, though its first two were within the gap: drift.
        ((0.5, 0.25, 0.125, 0.1, 0.03125), "abecd", False),
        # A token from outside the top-5 at position 4 (golden 0.03125, down to 0: a tie)...
        ((0.5, 0.25, 0.125, 0.0625, 0.03125), "abcdz", True),
        # ...or at position 2, pushing c and d down (0.125 down to 0: drift).
        ((0.5, 0.25, 0.125, 0.0625, 0.03125), "abzcd", False),
        # A top-5 of another length is never a near-tie.
        ((0.5, 0.25, 0.125, 0.0625, 0.03125), "abcd", False),
    ],
)
def test_top5_order_changes_are_near_ties_by_the_golden_span(
    golden: dict[str, Any],
    run: dict[str, Any],
    golden_probs: tuple[float, ...],
    observed: str,
    near_tie: bool,
) -> None:
    tol = dataclasses.replace(TOL, near_tie=0.0625)
    probs = dict(zip("abcde", golden_probs))
    entry(golden)["final_prediction"]["top5"] = [[t, p] for t, p in probs.items()]
    entry(run)["final_prediction"]["top5"] = [[t, probs.get(t, 0.01)] for t in observed]
    report = cmp(golden, run, tol=tol, sections=("final_prediction",))
    found = report.near_ties if near_tie else report.drifts
    assert found == [
        Drift("final_prediction", "top5 tokens", list("abcde"), list(observed), 0.0625, None, PID)
    ]
    assert (report.drifts if near_tie else report.near_ties) == []


def test_temperature_rows_belong_to_the_final_prediction(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    entry(run)["temperature"]["entropy"][1] += 1.0
    report = cmp(golden, run)
    assert where(report) == [("final_prediction", "T=2.0 entropy", None, None)]
    entry(run)["temperature"]["temperature"] = [0.5, 2.0]
    assert [d.metric for d in cmp(golden, run).drifts] == ["temperatures"]


# ------------------------------------------------------------------------- decoding


def test_decoding_points_are_each_pinned(golden: dict[str, Any], run: dict[str, Any]) -> None:
    g, dec = entry(golden)["decoding"], entry(run)["decoding"]
    g["final"]["entropy"][2], dec["final"]["entropy"][2] = 4.0, 5.0
    g["raw"]["p_answer"][1], dec["raw"]["p_answer"][1] = 0.25, 0.5
    dec["next-ln1"]["L_semantic"] = 3
    dec["onset_disagreement"] = True
    report = cmp(golden, run, sections=("decoding",))
    assert report.drifts == [
        Drift("decoding", "onset_disagreement", False, True, 0, None, PID),
        Drift("decoding", "next-ln1 L_semantic", None, 3, 0, None, PID),
        Drift("decoding", "final entropy", 4.0, 5.0, 0.25, 2, PID),
        Drift("decoding", "raw p_answer", 0.25, 0.5, 0.125, 1, PID),
    ]
    dec["final"]["top1"].pop()
    assert Drift("decoding", "final layer count", 4, 3, 0, None, PID) in cmp(golden, run).drifts


@pytest.mark.parametrize("side", ["golden", "run"])
def test_a_missing_decoding_ablation_is_one_drift_and_lenient_skips_it(
    golden: dict[str, Any], run: dict[str, Any], side: str
) -> None:
    """Files written before the ablation existed: drift for a golden, not for `diff`."""
    entry(golden if side == "golden" else run)["decoding"] = None
    report = cmp(golden, run, sections=("decoding",))
    present = (side != "golden", side != "run")
    assert report.drifts == [Drift("decoding", "decoding ablation present", *present, 0, None, PID)]
    assert report.compared["decoding"] == 1
    lenient = cmp(golden, run, sections=("decoding",), lenient=True)
    assert lenient.ok and lenient.compared["decoding"] == 0


def test_decoding_l_semantic_p_answer_outliers_and_ranks(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    g, dec = entry(golden)["decoding"], entry(run)["decoding"]
    g["final"]["L_semantic"], dec["final"]["L_semantic"] = 2, 3
    g["raw"]["p_answer"][1], dec["raw"]["p_answer"][1] = 0.25, 0.625  # beyond 0.125, cap 0.5
    g["raw"]["answer_rank"][2], dec["raw"]["answer_rank"][2] = 7, 1000
    report = cmp(golden, run, tol=OUT, sections=("decoding",))
    assert report.drifts == [
        Drift("decoding", "final L_semantic", 2, 3, 0, None, PID),
        Drift("decoding", "raw answer_rank", 7, 1000, 3, 2, PID),
    ]
    assert report.outliers == [Drift("decoding", "raw p_answer", 0.25, 0.625, 0.125, 1, PID)]
    assert report.max_delta["decoding"] == 0.375  # answer ranks are not probabilities
    assert cmp(golden, run, tol=OUT, sections=("decoding",), collapse_allowance=1).section(
        "decoding"
    ) == [Drift("decoding", "raw answer_rank", 7, 1000, 3, 2, PID)]


@pytest.mark.parametrize(
    ("golden_rank", "run_rank", "ok"),
    [(4, 5, True), (4, 7, False), (1, 2, False), (100, 150, True), (100, 151, False)],
)
def test_answer_rank_may_move_by_rank_rel(
    golden: dict[str, Any], run: dict[str, Any], golden_rank: int, run_rank: int, ok: bool
) -> None:
    entry(golden)["decoding"]["raw"]["answer_rank"][0] = golden_rank
    entry(run)["decoding"]["raw"]["answer_rank"][0] = run_rank
    report = cmp(golden, run, sections=("decoding",))
    assert report.ok is ok
    if not ok:
        assert report.drifts == [
            Drift(
                "decoding", "raw answer_rank", golden_rank, run_rank, int(0.5 * golden_rank), 0, PID
            )
        ]


@pytest.mark.parametrize(("golden_rank", "run_rank"), [(1, 2), (4, 7)])
def test_an_answer_rank_beyond_its_slack_is_never_an_outlier(
    golden: dict[str, Any], run: dict[str, Any], golden_rank: int, run_rank: int
) -> None:
    """The outlier allowance is for entropies and probabilities (their caps); a rank is
    drift once beyond its slack, and stays out of the section's max |delta|."""
    entry(golden)["decoding"]["raw"]["answer_rank"][0] = golden_rank
    entry(run)["decoding"]["raw"]["answer_rank"][0] = run_rank
    report = cmp(golden, run, tol=OUT, sections=("decoding",))
    assert [(d.metric, d.golden, d.observed) for d in report.drifts] == [
        ("raw answer_rank", golden_rank, run_rank)
    ]
    assert report.outliers == [] and report.max_delta["decoding"] == 0.0


# --------------------------------------------------------- schema and tokenization


def test_key_paths_flatten_dicts_and_lists() -> None:
    tree = {"a": {"b": "int"}, "c": [{"d": "str"}], "e": [], "f": "null"}
    assert _key_paths(tree) == {"a.b": "int", "c[].d": "str", "e": "[]", "f": "null"}
    assert _key_paths("int") == {"": "int"}
    assert _key_paths([]) == {"": "[]"}
    assert _key_paths(["float"], "p") == {"p[]": "float"}


def test_json_key_paths_headers_stats_and_facts(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    keys = run["schema"]["json_keys"]
    del keys["diagnostics"]["copy_threshold"]
    keys["diagnostics"]["new_flag"] = "bool"
    keys["model_stats"]["d_model"] = "float"
    keys["diagnostics"]["versions"]["transformer-lens"] = "str"  # environment: ignored
    keys["diagnostics"]["self_test"]["passed"] = "bool"  # whether --self-test ran: ignored
    run["schema"]["records_header"] = run["schema"]["records_header"].replace("rest_mass", "rest")
    run["model_stats"]["d_vocab"] = 32000
    run["facts"]["final_ln_type"] = "RMSNorm"
    report = cmp(golden, run, sections=("schema",))
    assert [(d.metric, d.golden, d.observed) for d in report.drifts] == [
        ("records_header", golden["schema"]["records_header"], run["schema"]["records_header"]),
        ("json key diagnostics.copy_threshold", "float", "absent"),
        ("json key diagnostics.new_flag", "absent", "bool"),
        ("json key model_stats.d_model", "int", "float"),
        ("model_stats d_vocab", 49152, 32000),
        ("fact final_ln_type", "LlamaRMSNorm", "RMSNorm"),
    ]
    lenient = cmp(golden, run, sections=("schema",), lenient=True)
    assert "json key diagnostics.new_flag" not in [d.metric for d in lenient.drifts]


def test_class_dependent_facts_only_compare_within_a_class(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    run["facts"]["unembed_dtype"] = "torch.bfloat16"
    run["facts"]["use_fp32_unembed"] = False
    assert [d.metric for d in cmp(golden, run).drifts] == [
        "fact unembed_dtype",
        "fact use_fp32_unembed",
    ]
    run["class"] = "cpu-bfloat16"
    assert cmp(golden, run).ok


def test_norm_class_names_only_compare_within_a_backend(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    """HookedTransformer names transformers' LlamaRMSNorm `RMSNorm` (TransformerLens 3.9
    against the committed goldens): a library's naming, not a change of the lens."""
    assert golden["environment"]["backend"] == "transformers"
    assert golden["facts"]["final_ln_type"] == "LlamaRMSNorm"
    run["facts"]["final_ln_type"] = run["facts"]["first_block_ln1_type"] = "RMSNorm"
    assert [d.metric for d in cmp(golden, run).drifts] == [
        "fact final_ln_type",
        "fact first_block_ln1_type",
    ]
    run["environment"]["backend"] = "hooked-transformer"
    assert cmp(golden, run).ok
    run["facts"]["architecture"] = "post_norm"  # other facts still compare across backends
    assert [d.metric for d in cmp(golden, run).drifts] == ["fact architecture"]


def test_tokenization_compares_every_key(golden: dict[str, Any], run: dict[str, Any]) -> None:
    tok = entry(run)["tokenization"]
    tok["input_ids"][2] += 1
    tok["answer_ids"] = [1, 2]
    report = cmp(golden, run, sections=("tokenization",))
    assert [d.metric for d in report.drifts] == ["answer_ids", "input_ids"]


def test_sections_select_what_is_compared(golden: dict[str, Any], run: dict[str, Any]) -> None:
    e = entry(run)
    run["schema"]["pure_header"] = "x"
    e["tokenization"]["prepend_bos"] = not e["tokenization"]["prepend_bos"]
    e["collapse"]["L_copy"] = 99
    e["next_token"]["entropy"][0] += 9
    e["records"]["entropy"][0][0] += 9
    e["probes"]["entropy"][0] += 9
    e["final_prediction"]["entropy"] += 9
    e["decoding"]["raw"]["entropy"][0] += 9
    e["metrics"]["next_token"]["entropy_bits"][0] += 9
    everything = cmp(golden, run)
    assert [d.section for d in everything.drifts] == list(SECTIONS)
    for name in SECTIONS:
        assert [d.section for d in cmp(golden, run, sections=(name,)).drifts] == [name]


# ------------------------------------------------------------------- prompt identity


def test_a_changed_prompt_is_an_identity_change_not_drift(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    e = entry(run)
    e["answer"] = "Paris"
    e["sha256"] = "0" * 64
    e["records"]["entropy"][0][0] += 9  # would drift, but the prompt is not the same one
    report = cmp(golden, run)
    assert report.ok and not report.identity_ok
    assert report.changed_prompts == {PID: ["answer"]}
    entry(golden)["sha256"] = "1" * 64  # probes changed (text and answer the same)
    e["answer"] = entry(golden)["answer"]
    assert cmp(golden, run).changed_prompts == {PID: ["probes"]}


def test_missing_and_removed_prompts(golden: dict[str, Any], run: dict[str, Any]) -> None:
    run["prompts"]["new-one"] = dict(entry(run), sha256="2" * 64)
    golden["prompts"]["old-one"] = dict(entry(golden), sha256="3" * 64)
    report = cmp(golden, run)
    assert report.ok and not report.identity_ok
    assert (report.missing_prompts, report.removed_prompts) == (["new-one"], ["old-one"])


def test_prompts_pair_by_id_then_by_hash(golden: dict[str, Any]) -> None:
    a, b = entry(golden), dict(entry(golden), sha256="b" * 64)
    pairs, missing, removed = pair_prompts({"x": a, "y": b}, {"y": b, "renamed": a, "z": b})
    assert pairs == [("y", "y"), ("x", "renamed")]
    assert (missing, removed) == (["z"], [])
    run = copy.deepcopy(golden)
    run["prompts"] = {"output-file-name": run["prompts"].pop(PID)}
    run["prompts"]["output-file-name"]["records"]["entropy"][1][1] += 1
    report = cmp(golden, run)
    assert where(report) == [("records", "entropy", 1, 1)]
    assert report.drifts[0].prompt == "output-file-name"
