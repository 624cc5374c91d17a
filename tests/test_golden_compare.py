"""lenscheck.golden.compare and .report: drift detection and the report, no model needed.

The documents are the committed synthetic-llama golden (real structure) edited by hand.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from lenscheck.golden.compare import Drift, DriftReport, compare_golden
from lenscheck.golden.report import rebless_command, render_report
from lenscheck.golden.tolerances import DEFAULT_TOLERANCES, Tolerances

GOLDEN_PATH = (
    Path(__file__).resolve().parents[1] / "golden" / "synthetic-llama" / "cpu-float32.json"
)
FP32 = DEFAULT_TOLERANCES["cpu-float32"]


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return dict(json.loads(GOLDEN_PATH.read_text(encoding="utf-8")))


@pytest.fixture
def golden(committed: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(committed)


@pytest.fixture
def run(committed: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(committed)


def where(report: DriftReport) -> list[tuple[str, str, int | None]]:
    return [(d.section, d.metric, d.layer) for d in report.drifts]


def test_equal_documents_are_ok(golden: dict[str, Any], run: dict[str, Any]) -> None:
    report = compare_golden(golden, run, FP32, tolerance_note="cpu-float32 tolerances")
    assert report.ok
    assert report.drifts == [] and report.near_ties == []
    assert report.first_divergence() is None
    assert (report.model, report.golden_class, report.run_class) == (
        "synthetic-llama",
        "cpu-float32",
        "cpu-float32",
    )


@pytest.mark.parametrize(
    ("delta", "drifts"),
    [(0.5, [("trajectory", "entropy", 2)]), (-2e-4, [("trajectory", "entropy", 2)]), (1e-6, [])],
    ids=["far", "just-beyond", "within"],
)
def test_trajectory_entropy_tolerance(
    golden: dict[str, Any], run: dict[str, Any], delta: float, drifts: list[Any]
) -> None:
    run["trajectory"][2]["entropy"] += delta
    report = compare_golden(golden, run, FP32)
    assert where(report) == drifts
    assert report.ok is (not drifts)
    if drifts:
        (drift,) = report.drifts
        assert drift.golden == golden["trajectory"][2]["entropy"]
        assert drift.observed == run["trajectory"][2]["entropy"]
        assert drift.delta == pytest.approx(abs(delta))
        assert drift.tolerance == FP32.entropy


def test_tolerance_boundary_is_inclusive(golden: dict[str, Any], run: dict[str, Any]) -> None:
    golden["trajectory"][1]["p_top1"] = 0.5
    run["trajectory"][1]["p_top1"] = 0.75
    assert compare_golden(golden, run, Tolerances(1, 0.25, 1, 0, 1)).ok
    assert where(compare_golden(golden, run, Tolerances(1, 0.2499, 1, 0, 1))) == [
        ("trajectory", "p_top1", 1)
    ]


def test_nan_is_always_drift(golden: dict[str, Any], run: dict[str, Any]) -> None:
    run["trajectory"][0]["entropy"] = float("nan")
    assert where(compare_golden(golden, run, Tolerances(1e9, 1, 1, 1, 1))) == [
        ("trajectory", "entropy", 0)
    ]


def _top1_change(golden: dict[str, Any], run: dict[str, Any], gap: float) -> None:
    row = golden["trajectory"][1]
    row["p_top1"], row["p_top2"] = 0.30, 0.30 - gap
    run["trajectory"][1].update(p_top1=0.30, top1=" other")


def test_top1_change_under_near_tie_gap_is_reported_not_failed(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    _top1_change(golden, run, gap=FP32.near_tie / 2)
    report = compare_golden(golden, run, FP32)
    assert report.ok
    assert report.drifts == []
    assert [(d.metric, d.layer, d.golden, d.observed) for d in report.near_ties] == [
        ("top1", 1, golden["trajectory"][1]["top1"], " other")
    ]
    text = render_report(report)
    assert "near-tie (not a failure): trajectory: layer 1 top1:" in text
    assert "no drift beyond tolerance" in text


def test_top1_change_over_near_tie_gap_is_drift(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    _top1_change(golden, run, gap=FP32.near_tie * 2)
    report = compare_golden(golden, run, FP32)
    assert not report.ok
    assert where(report) == [("trajectory", "top1", 1)]
    assert report.near_ties == []


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
    golden["collapse"]["L_semantic"], run["collapse"]["L_semantic"] = golden_l, run_l
    report = compare_golden(golden, run, FP32, collapse_allowance=allowance)
    assert report.ok is ok
    assert where(report) == ([] if ok else [("collapse", "L_semantic", None)])
    if not ok:
        assert report.drifts[0].tolerance == allowance


def test_layer_count_mismatch(golden: dict[str, Any], run: dict[str, Any]) -> None:
    run["trajectory"].append(dict(run["trajectory"][-1], layer=4))
    report = compare_golden(golden, run, FP32)
    assert [(d.metric, d.golden, d.observed) for d in report.drifts] == [("layer count", 4, 5)]


def test_layer_numbering_shift_is_drift(golden: dict[str, Any], run: dict[str, Any]) -> None:
    """Rows compare by position; a run that numbers them differently drifted."""
    for row in run["trajectory"]:
        row["layer"] += 1
    report = compare_golden(golden, run, FP32)
    assert where(report) == [("trajectory", "layer index", n) for n in range(4)]
    assert report.drifts[0].observed == 1


def test_model_stats_drift_names_each_field(golden: dict[str, Any], run: dict[str, Any]) -> None:
    golden["model_stats"].update(num_layers=5, d_vocab=32000)
    report = compare_golden(golden, run, FP32)
    assert sorted((d.metric, d.golden, d.observed) for d in report.drifts) == [
        ("d_vocab", 32000, 49152),
        ("num_layers", 5, 3),
    ]


def test_json_key_path_drift_names_the_path(golden: dict[str, Any], run: dict[str, Any]) -> None:
    keys = run["schema"]["json_keys"]
    del keys["diagnostics"]["copy_threshold"]
    keys["diagnostics"]["new_flag"] = "bool"
    keys["model_stats"]["d_model"] = "float"
    keys["test_prompts"][0]["rank"] = "int"
    report = compare_golden(golden, run, FP32)
    assert [(d.metric, d.golden, d.observed) for d in report.drifts] == [
        ("json key diagnostics.copy_threshold", "float", "absent"),
        ("json key diagnostics.new_flag", "absent", "bool"),
        ("json key model_stats.d_model", "int", "float"),
        ("json key test_prompts[].rank", "absent", "int"),
    ]
    assert {d.section for d in report.drifts} == {"schema"}
    assert "schema: json key diagnostics.copy_threshold: golden 'float' vs " in render_report(
        report
    )


def test_library_versions_are_environment_not_schema(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    """A transformer-lens run lists one more library; the same golden must serve it."""
    run["schema"]["json_keys"]["diagnostics"]["versions"]["transformer-lens"] = "str"
    assert compare_golden(golden, run, FP32).ok
    del run["schema"]["json_keys"]["diagnostics"]["versions"]
    assert compare_golden(golden, run, FP32).ok
    run["schema"]["json_keys"]["diagnostics"]["versionz"] = "str"  # but nothing else
    assert where(compare_golden(golden, run, FP32)) == [
        ("schema", "json key diagnostics.versionz", None)
    ]


def test_csv_header_drift(golden: dict[str, Any], run: dict[str, Any]) -> None:
    run["schema"]["records_header"] = run["schema"]["records_header"].replace("rest_mass", "rest")
    assert where(compare_golden(golden, run, FP32)) == [("schema", "records_header", None)]


def test_final_top5_token_change(golden: dict[str, Any], run: dict[str, Any]) -> None:
    top5 = run["final_prediction"]["top5"]
    top5[3], top5[4] = top5[4], top5[3]
    report = compare_golden(golden, run, FP32)
    assert [(d.section, d.metric) for d in report.drifts] == [("final_prediction", "top5 tokens")]
    assert report.drifts[0].golden == [t for t, _ in golden["final_prediction"]["top5"]]
    assert report.drifts[0].observed == [t for t, _ in top5]


def test_final_probability_drift_names_rank_and_token(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    token = run["final_prediction"]["top5"][1][0]
    run["final_prediction"]["top5"][1][1] += 0.01
    run["final_prediction"]["entropy"] += 1e-5  # within
    report = compare_golden(golden, run, FP32)
    assert [d.metric for d in report.drifts] == [f"p(top2 {token!r})"]


def test_sections_limit_the_comparison(golden: dict[str, Any], run: dict[str, Any]) -> None:
    run["trajectory"][0]["entropy"] += 1
    run["collapse"]["L_copy"] = 2
    assert where(compare_golden(golden, run, FP32, sections=("collapse",))) == [
        ("collapse", "L_copy", None)
    ]
    assert compare_golden(golden, run, FP32, sections=("schema", "tokenization")).ok


def test_first_divergence_is_the_lowest_layer(golden: dict[str, Any], run: dict[str, Any]) -> None:
    run["trajectory"][3]["entropy"] += 1
    run["trajectory"][1]["p_top1"] += 0.1
    run["collapse"]["L_copy"] = 2
    report = compare_golden(golden, run, FP32)
    first = report.first_divergence()
    assert first is not None and (first.metric, first.layer) == ("p_top1", 1)
    assert report.section("collapse") == [report.drifts[0]]


def test_drift_delta() -> None:
    assert Drift("s", "m", 1.0, 1.5).delta == 0.5
    assert Drift("s", "m", "a", "b").delta is None
    assert Drift("s", "m", None, 3).delta is None


# ------------------------------------------------------------------------ the report


def test_report_names_metric_layer_values_and_the_rebless_command(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    run["trajectory"][2]["entropy"] += 0.5
    report = compare_golden(golden, run, FP32, tolerance_note="cpu-float32 tolerances")
    text = render_report(report, golden_path="golden/synthetic-llama/cpu-float32.json")
    lines = text.splitlines()
    assert lines[0] == (
        "lenscheck drift: synthetic-llama (cpu-float32 run vs cpu-float32 golden "
        "golden/synthetic-llama/cpu-float32.json)"
    )
    assert lines[1] == "  compared with cpu-float32 tolerances"
    assert "1 drift(s) (trajectory 1); first: trajectory: layer 2 entropy: golden " in lines[2]
    assert lines[2].endswith("|Δ| 0.5 > tol 0.0001")
    assert any(line.startswith("  >> 2 ") for line in lines)  # the marked table row
    assert lines[-1] == (
        "  if this change is intended, re-bless: "
        "pytest --lens-models=synthetic-llama --snapshot-update"
    )
    assert rebless_command("org/m") == "pytest --lens-models=org/m --snapshot-update"


def test_report_is_bounded(golden: dict[str, Any], run: dict[str, Any]) -> None:
    """Hundreds of drifts: 12 listed, then "... and N more"; table of 7 layers at most."""
    rows = [dict(golden["trajectory"][0], layer=n) for n in range(200)]
    golden["trajectory"] = rows
    run["trajectory"] = [dict(r, entropy=r["entropy"] + 1, p_top1=r["p_top1"] + 0.5) for r in rows]
    report = compare_golden(golden, run, FP32)
    assert len(report.drifts) == 400
    text = render_report(report)
    lines = text.splitlines()
    assert "  ... and 388 more" in lines
    assert sum(line.startswith("  trajectory: layer ") for line in lines) == 12
    assert sum(line.startswith(("  >> ", "     ")) for line in lines) <= 7  # context rows
    assert len(lines) < 40
    assert len(text) < 5000
    assert lines[-1].endswith("pytest --lens-models=synthetic-llama --snapshot-update")


def test_report_caps_near_ties_and_long_values(golden: dict[str, Any], run: dict[str, Any]) -> None:
    rows = [dict(golden["trajectory"][0], layer=n, p_top1=0.3, p_top2=0.3) for n in range(50)]
    golden["trajectory"] = rows
    run["trajectory"] = [dict(r, top1="x" * 500) for r in rows]
    text = render_report(compare_golden(golden, run, FP32))
    assert text.count("near-tie (not a failure)") == 12
    assert "x" * 100 not in text  # values are shortened
    assert len(text) < 5000
