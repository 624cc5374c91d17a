"""lenscheck.golden.compare, whole reports: one edit per scenario, every field pinned.

``test_golden_compare.py`` states each rule with the values that decide it. Here every
scenario's *whole* report is compared with its reviewed snapshot
(``__snapshots__/test_golden_compare_reports.ambr``): every drift with all its fields
(section, metric, golden, observed, tolerance, prompt, layer, position), the near-ties, the
outliers, what each section counted as compared, the largest |delta| per section, the
prompt identity lists and the first divergence. A change in any of them (a metric name
that ``lenscheck diff`` prints, a location, a count) shows as a snapshot diff.

After an intended change: ``pytest tests/test_golden_compare_reports.py --snapshot-update``,
then review the diff of the ``.ambr`` file like code.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest

from lenscheck.golden.compare import Drift, DriftReport, compare_golden
from lenscheck.golden.tolerances import DEFAULT_TOLERANCES, Tolerances

FP32 = DEFAULT_TOLERANCES["cpu-float32"]
#: Dyadic, so that "at the tolerance" is exact; wide enough that most cells are near-ties.
TOL = Tolerances(
    entropy=0.25, p_top1=0.125, final_prob=0.0625, near_tie=0.5, kl_consistency=1e-6, rank_rel=0.5
)
#: TOL with an outlier allowance: a third of a section may sit between tolerance and cap.
OUTLIERS = dataclasses.replace(TOL, outlier_fraction=0.34, entropy_cap=1.0, p_cap=0.5)
#: The same allowance, too small for two values out of a handful.
FEW_OUTLIERS = dataclasses.replace(OUTLIERS, outlier_fraction=0.01)
PID = "capital-de"

Doc = dict[str, Any]
Edit = Callable[[Doc, Doc], "dict[str, Any] | None"]
SCENARIOS: dict[str, Edit] = {}


def scenario(fn: Edit) -> Edit:
    """Register ``fn(golden, run)``: it edits the documents and may return compare kwargs."""
    SCENARIOS[fn.__name__] = fn
    return fn


def p(doc: Doc) -> Doc:
    """The one prompt's entry."""
    return doc["prompts"][PID]  # type: ignore[no-any-return]


def drift_fields(d: Drift | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {**dataclasses.asdict(d), "delta": d.delta, "where": d.where}


def report_fields(r: DriftReport) -> dict[str, Any]:
    """Everything a report says, NaN spelled out (NaN != NaN would fail any comparison)."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and math.isnan(x):
            return "nan"
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return clean(
        {
            "ok": r.ok,
            "identity_ok": r.identity_ok,
            "model": r.model,
            "classes": [r.golden_class, r.run_class],
            "tolerance_note": r.tolerance_note,
            "drifts": [drift_fields(d) for d in r.drifts],
            "near_ties": [drift_fields(d) for d in r.near_ties],
            "outliers": [drift_fields(d) for d in r.outliers],
            "compared": dict(sorted(r.compared.items())),
            "max_delta": dict(sorted(r.max_delta.items())),
            "changed_prompts": r.changed_prompts,
            "missing_prompts": r.missing_prompts,
            "removed_prompts": r.removed_prompts,
            "first_divergence": drift_fields(r.first_divergence()),
        }
    )


# ------------------------------------------------------------------------- no drift


@scenario
def identical(g: Doc, o: Doc) -> dict[str, Any]:
    return {"tol": FP32, "tolerance_note": "cpu-float32 tolerances"}


@scenario
def identical_lenient(g: Doc, o: Doc) -> dict[str, Any]:
    return {"tol": FP32, "lenient": True}


@scenario
def within_tolerance_everywhere(g: Doc, o: Doc) -> None:
    run = p(o)
    run["records"]["entropy"][1][2] += 0.25  # exactly at the tolerance: not drift
    run["next_token"]["entropy"][0] -= 0.125
    run["probes"]["p_top1"][3] += 0.125
    run["final_prediction"]["entropy"] += 0.0625
    run["temperature"]["entropy"][1] -= 0.25
    run["decoding"]["raw"]["p_answer"][2] += 0.125


# ---------------------------------------------------------------------------- records


@scenario
def records_entropy_and_p_top1_beyond(g: Doc, o: Doc) -> None:
    p(o)["records"]["entropy"][1][2] += 0.5
    p(o)["records"]["p_top1"][3][15] -= 0.25


@scenario
def records_top1_changes_near_tie_and_not(g: Doc, o: Doc) -> None:
    top1 = p(o)["records"]["top1"]
    top1[0][0] = "far"  # golden gap 0.83: drift
    top1[0][2] = "near"  # golden gap 0.03: a near-tie


@scenario
def records_p_top2_alone_is_not_compared(g: Doc, o: Doc) -> None:
    p(o)["records"]["p_top2"][2][5] += 0.4


@scenario
def records_outliers_within_the_allowance(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["records"]["entropy"][2][7] += 0.75  # beyond 0.25, within the cap of 1
    p(o)["records"]["top1"][1][0] = "changed"
    return {"tol": OUTLIERS}


@scenario
def records_beyond_the_cap_is_drift(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["records"]["entropy"][2][7] += 1.5
    p(o)["records"]["p_top1"][2][8] += 0.75
    return {"tol": OUTLIERS}


@scenario
def records_too_many_outliers_are_all_drift(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["records"]["entropy"][2][7] += 0.75
    p(o)["records"]["p_top1"][0][1] += 0.25
    p(o)["final_prediction"]["entropy"] += 0.5  # another section: its own allowance
    return {"tol": FEW_OUTLIERS}


@scenario
def records_unknown_and_nan_values(g: Doc, o: Doc) -> None:
    p(o)["records"]["entropy"][2][3] = None
    p(g)["records"]["p_top1"][1][1] = None
    p(o)["records"]["p_top1"][3][4] = math.nan
    p(o)["records"]["top1"][0][5] = None


@scenario
def records_unknown_values_lenient(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["records"]["entropy"][2][3] = None
    p(g)["records"]["p_top1"][1][1] = None
    p(o)["records"]["p_top1"][3][4] = math.nan  # NaN is known, and always drift
    p(o)["records"]["top1"][0][5] = None
    return {"lenient": True}


@scenario
def records_shape_change(g: Doc, o: Doc) -> None:
    for metric in ("top1", "p_top1", "p_top2", "entropy"):
        for row in p(o)["records"][metric]:
            row.pop()


@scenario
def records_layer_count_change(g: Doc, o: Doc) -> None:
    for metric in ("top1", "p_top1", "p_top2", "entropy"):
        p(o)["records"][metric].pop()


@scenario
def records_without_rows_on_both_sides(g: Doc, o: Doc) -> None:
    for doc in (g, o):
        p(doc)["records"] = {m: [] for m in ("top1", "p_top1", "p_top2", "entropy")}


@scenario
def records_without_rows_in_the_run(g: Doc, o: Doc) -> None:
    p(o)["records"] = {m: [] for m in ("top1", "p_top1", "p_top2", "entropy")}


@scenario
def records_without_rows_in_the_golden(g: Doc, o: Doc) -> None:
    p(g)["records"] = {m: [] for m in ("top1", "p_top1", "p_top2", "entropy")}


@scenario
def lenient_still_compares_known_values(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["records"]["top1"][0][0] = "far"  # golden gap 0.83: drift
    p(o)["records"]["top1"][0][2] = "near"  # a near-tie
    p(g)["collapse"]["L_semantic"], p(o)["collapse"]["L_semantic"] = 1, 3
    p(g)["decoding"]["raw"]["L_semantic"], p(o)["decoding"]["raw"]["L_semantic"] = 0, 2
    return {"lenient": True}


@scenario
def records_missing_in_the_run(g: Doc, o: Doc) -> None:
    p(o)["records"] = None


@scenario
def records_missing_in_the_golden_lenient(g: Doc, o: Doc) -> dict[str, Any]:
    p(g)["records"] = None
    return {"lenient": True}


@scenario
def records_missing_on_both_sides(g: Doc, o: Doc) -> None:
    p(g)["records"] = p(o)["records"] = None


# ------------------------------------------------------------------------- trajectory


@scenario
def trajectory_shifted_layers_and_values(g: Doc, o: Doc) -> None:
    nt = p(o)["next_token"]
    nt["layer"] = [i + 1 for i in nt["layer"]]
    nt["entropy"][2] += 1.0
    nt["p_top1"][1] -= 0.5
    nt["top1"][3] = "other"


@scenario
def trajectory_rows_of_another_length(g: Doc, o: Doc) -> None:
    p(o)["next_token"]["top1"].pop()  # the layer list is intact: the rows are counted


@scenario
def trajectory_without_golden_p_top2(g: Doc, o: Doc) -> None:
    p(g)["next_token"]["p_top2"] = None  # no gap known: a changed top-1 is never a tie
    p(o)["next_token"]["top1"][1] = "other"


@scenario
def trajectory_layer_count(g: Doc, o: Doc) -> None:
    for values in p(o)["next_token"].values():
        values.pop()


# --------------------------------------------------------------------------- collapse


@scenario
def collapse_flags_flip_far_from_their_rule(g: Doc, o: Doc) -> dict[str, Any]:
    flags = p(o)["flags"]
    flags["copy_collapse"][1] = True
    flags["entropy_collapse"][0] = True
    return {"tol": FP32}


@scenario
def collapse_flags_flip_at_their_rule(g: Doc, o: Doc) -> dict[str, Any]:
    nt = p(g)["next_token"]
    nt["entropy"][2] = 1.0  # entropy collapse sits at 1 bit
    nt["p_top1"][1], nt["p_top2"][1] = 0.9, 0.05  # copy: p1 at the threshold
    nt["p_top1"][0], nt["p_top2"][0] = 0.5, 0.4995  # is_answer: a near-tie
    flags = p(o)["flags"]
    flags["entropy_collapse"][2] = True
    flags["copy_collapse"][1] = True
    flags["is_answer"][0] = True
    p(o)["collapse"].update(L_copy_H=2, L_copy=1, L_semantic=0)
    return {"tol": FP32}


@scenario
def collapse_each_flag_has_its_own_rule(g: Doc, o: Doc) -> dict[str, Any]:
    nt = p(g)["next_token"]
    nt["p_top1"][1], nt["p_top2"][1] = 0.9, 0.05  # at the copy rule only
    nt["entropy"][2] = 1.0  # at the entropy rule only
    flags = p(o)["flags"]
    flags["entropy_collapse"][1] = True  # not near its own rule: drift
    flags["is_answer"][2] = True  # golden gap 0.47, beyond FP32's near-tie: drift
    return {"tol": FP32}


@scenario
def collapse_copy_flip_at_the_margin(g: Doc, o: Doc) -> dict[str, Any]:
    nt = p(g)["next_token"]
    nt["p_top1"][3], nt["p_top2"][3] = 0.5, 0.45  # p1 - p2 at the margin, p1 far below
    p(o)["flags"]["copy_collapse"][3] = True
    return {"tol": FP32}


@scenario
def collapse_flags_unknown_lenient(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["flags"]["copy_collapse"][1] = None
    p(g)["collapse"]["L_copy"] = 2
    p(o)["collapse"]["L_copy"] = None
    return {"lenient": True}


@scenario
def collapse_flag_layer_count(g: Doc, o: Doc) -> None:
    p(o)["flags"]["is_answer"].pop()


@scenario
def collapse_first_flag_layer_count(g: Doc, o: Doc) -> None:
    p(o)["flags"]["copy_collapse"].pop()  # the other flags are still compared
    p(o)["flags"]["is_answer"][1] = True


@scenario
def collapse_flag_flip_at_its_rule_lenient(g: Doc, o: Doc) -> dict[str, Any]:
    p(g)["next_token"]["entropy"][2] = 1.0
    p(o)["flags"]["entropy_collapse"][2] = True
    return {"tol": FP32, "lenient": True}


@scenario
def collapse_layer_moved_by_a_tie(g: Doc, o: Doc) -> dict[str, Any]:
    p(g)["next_token"]["entropy"][2] = 1.0
    p(g)["flags"]["entropy_collapse"][2] = True
    p(g)["collapse"]["L_copy_H"] = 2
    p(o)["collapse"]["L_copy_H"] = 4  # beyond the allowance too: still a near-tie
    return {"tol": FP32, "collapse_allowance": 1}


@scenario
def collapse_layers_move(g: Doc, o: Doc) -> dict[str, Any]:
    p(g)["collapse"].update(L_copy=1, L_copy_H=2, L_semantic=3, delta_layers=2)
    p(o)["collapse"].update(L_copy=2, L_copy_H=0, L_semantic=None, delta_layers=2)
    return {"collapse_allowance": 1}


# ---------------------------------------------------------- tokenization and probes


@scenario
def tokenization_changes(g: Doc, o: Doc) -> None:
    tok = p(o)["tokenization"]
    tok["input_ids"] = [*tok["input_ids"][:-1], 7]
    tok["tokens"][2] = " The"
    tok["extra"] = True
    del tok["answer_ids"]


@scenario
def probe_values_drift(g: Doc, o: Doc) -> None:
    probes = p(o)["probes"]
    probes["entropy"][0] += 1.0
    probes["p_top1"][13] -= 0.25
    probes["top1"][2] = "other"


@scenario
def probe_prompts_change(g: Doc, o: Doc) -> None:
    p(o)["probes"]["prompt"][1] = "Another probe"


# --------------------------------------------------------------------------- final


@scenario
def final_entropy_and_probabilities(g: Doc, o: Doc) -> None:
    final = p(o)["final_prediction"]
    final["entropy"] -= 0.5
    final["top5"][0][1] += 0.125
    final["top5"][4][1] -= 0.03125  # within final_prob


@scenario
def final_top5_swap_near_tie(g: Doc, o: Doc) -> None:
    top5 = p(o)["final_prediction"]["top5"]
    top5[1], top5[2] = top5[2], top5[1]


@scenario
def final_top5_swap_beyond_the_near_tie(g: Doc, o: Doc) -> dict[str, Any]:
    top5 = p(o)["final_prediction"]["top5"]
    top5[0], top5[1] = top5[1], top5[0]
    return {"tol": FP32}


@scenario
def final_top5_token_replaced(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["final_prediction"]["top5"][4] = ["new", 0.01]
    return {"tol": FP32}


@scenario
def final_unknown_entropy_lenient(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["final_prediction"]["entropy"] = None
    return {"lenient": True}


@scenario
def final_unknown_entropy_strict(g: Doc, o: Doc) -> None:
    p(o)["final_prediction"]["entropy"] = None


@scenario
def final_entropy_outlier_within_the_cap(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["final_prediction"]["entropy"] += 0.5
    return {"tol": OUTLIERS}


@scenario
def final_entropy_beyond_the_cap(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["final_prediction"]["entropy"] += 2.0
    return {"tol": OUTLIERS}


@scenario
def final_top5_probabilities_have_no_outlier_cap(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["final_prediction"]["top5"][1][1] += 0.125  # beyond final_prob: always drift
    return {"tol": OUTLIERS}


@scenario
def temperature_rows_drift(g: Doc, o: Doc) -> None:
    temp = p(o)["temperature"]
    temp["entropy"][1] += 0.5
    temp["top1"][0] = "other"
    temp["p_top1"][0] -= 0.25


@scenario
def temperatures_change(g: Doc, o: Doc) -> None:
    p(o)["temperature"]["temperature"] = [0.1, 1.5]


# ------------------------------------------------------------------------- decoding


@scenario
def decoding_points_drift(g: Doc, o: Doc) -> dict[str, Any]:
    dec = p(o)["decoding"]
    dec["onset_disagreement"] = True
    dec["next-ln1"]["L_semantic"] = 2
    dec["final"]["entropy"][1] += 1.0
    dec["final"]["p_answer"][3] += 0.25
    dec["raw"]["top1"][0] = "other"
    dec["raw"]["answer_rank"][1] += 1
    return {"tol": FP32}


@scenario
def decoding_p_answer_outlier_and_beyond_the_cap(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["decoding"]["final"]["p_answer"][0] += 0.25  # within the cap: an outlier
    p(o)["decoding"]["raw"]["p_answer"][1] += 0.75  # beyond: drift
    return {"tol": OUTLIERS}


@scenario
def decoding_ranks_within_and_beyond_their_slack(g: Doc, o: Doc) -> None:
    ranks = p(o)["decoding"]["next-ln1"]["answer_rank"]
    golden = p(g)["decoding"]["next-ln1"]["answer_rank"]
    ranks[0] = golden[0] + golden[0] // 2  # rank_rel 0.5: at the slack
    ranks[1] = golden[1] + golden[1] // 2 + 1  # one beyond
    p(g)["decoding"]["final"]["answer_rank"][2] = None
    p(o)["decoding"]["final"]["answer_rank"][2] = 3


@scenario
def metrics_values_by_their_tolerance_class(g: Doc, o: Doc) -> None:
    m = p(o)["metrics"]
    m["next_token"]["kl_to_final_bits"][1] += 0.5  # entropy class: drift
    m["next_token"]["cos_to_final"][2] += 1e-6  # prob class: within
    m["rawlens"]["top1_token_id_raw"][0] += 1  # exact
    m["milestones"]["first_kl_below_1.0"] = 0
    m["raw_lens_summary"]["n_norm_only_semantics"] += 1


@scenario
def metrics_ranks_small_exact_large_near_tie(g: Doc, o: Doc) -> dict[str, Any]:
    gm, om = p(g)["metrics"]["next_token"], p(o)["metrics"]["next_token"]
    gm["answer_rank"][0], om["answer_rank"][0] = 2, 3  # small and clear: drift
    gm["p_answer"][0] = 0.2
    gm["answer_rank"][1], om["answer_rank"][1] = 500, 900  # large: a near-tie
    gm["answer_rank"][2], om["answer_rank"][2] = 3, 4  # small, but tied with a neighbour
    gm["p_answer"][2] = p(g)["next_token"]["topk"][2][1][1]
    return {"tol": dataclasses.replace(TOL, near_tie=1e-3, rank_rel=0.0)}


@scenario
def metrics_copy_flag_flip_at_its_threshold(g: Doc, o: Doc) -> None:
    gm, om = p(g)["metrics"]["next_token"], p(o)["metrics"]["next_token"]
    gm["p_top1"][1] = 0.9  # at copy_strict@0.9's threshold: a near-tie
    om["copy_strict@0.9"][1] = not gm["copy_strict@0.9"][1]
    om["copy_strict@0.95"][2] = not gm["copy_strict@0.95"][2]  # far from it: drift


@scenario
def metrics_missing_in_the_run(g: Doc, o: Doc) -> None:
    p(o)["metrics"] = None


@scenario
def records_topk_order_and_probabilities(g: Doc, o: Doc) -> None:
    cell = p(o)["records"]["topk"][1][3]
    cell[1], cell[2] = cell[2], cell[1]  # a swap: near-tie only within the gap
    p(o)["next_token"]["topk"][0][4][1] += 0.25


@scenario
def decoding_layer_count(g: Doc, o: Doc) -> None:
    for key in ("top1", "p_top1", "p_top2", "entropy", "p_answer", "answer_rank"):
        p(o)["decoding"]["final"][key].pop()


@scenario
def decoding_missing_in_the_run(g: Doc, o: Doc) -> None:
    p(o)["decoding"] = None


@scenario
def decoding_missing_lenient(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["decoding"] = None
    return {"lenient": True}


@scenario
def decoding_unknown_values_lenient(g: Doc, o: Doc) -> dict[str, Any]:
    dec = p(o)["decoding"]
    dec["raw"]["L_semantic"] = 1
    p(g)["decoding"]["raw"]["L_semantic"] = None
    dec["final"]["p_answer"][0] = None
    dec["next-ln1"]["answer_rank"][2] = None
    return {"lenient": True}


# --------------------------------------------------------------------------- schema


@scenario
def schema_headers_keys_stats_and_facts(g: Doc, o: Doc) -> None:
    schema = o["schema"]
    schema["records_header"] = schema["records_header"].replace("entropy", "entropy_bits")
    schema["csv_dialect"]["delimiter"] = ";"
    schema["json_keys"]["diagnostics"]["new_key"] = "int"  # added
    del schema["json_keys"]["diagnostics"]["copy_margin"]  # removed
    schema["json_keys"]["diagnostics"]["versions"]["accelerate"] = "str"  # environment
    schema["json_keys"]["diagnostics"]["self_test"]["ran"] = "int"  # environment
    o["model_stats"]["n_heads"] = 8
    o["model_stats"]["extra"] = 1
    o["facts"]["copy_threshold"] = 0.8


@scenario
def schema_lenient_ignores_added_json_keys(g: Doc, o: Doc) -> dict[str, Any]:
    schema = o["schema"]
    schema["json_keys"]["diagnostics"]["new_key"] = "int"
    del schema["json_keys"]["diagnostics"]["copy_margin"]  # a removal still drifts
    return {"lenient": True}


@scenario
def schema_facts_of_another_class_and_backend(g: Doc, o: Doc) -> None:
    o["class"] = "cpu-bfloat16"
    o["environment"]["backend"] = "transformer-lens"
    o["facts"].update(
        use_fp32_unembed=False,
        unembed_dtype="torch.bfloat16",
        first_block_ln1_type="RMSNorm",
        final_ln_type="RMSNorm",
        model_class="Other",  # neither: still compared
    )


@scenario
def schema_facts_of_the_same_class_and_backend(g: Doc, o: Doc) -> None:
    o["facts"].update(
        use_fp32_unembed=False,
        unembed_dtype="torch.bfloat16",
        first_block_ln1_type="RMSNorm",
        final_ln_type="RMSNorm",
    )


# ----------------------------------------------------------- prompts and sections


@scenario
def prompt_text_answer_and_probes_change(g: Doc, o: Doc) -> None:
    base = p(o)
    for pid, edit in (("text", "prompt"), ("answer", "answer"), ("probes", None)):
        entry = copy.deepcopy(base)
        entry["sha256"] = f"changed-{pid}"
        if edit:
            entry[edit] = f"changed {edit}"
        g["prompts"][pid] = copy.deepcopy(base)
        o["prompts"][pid] = entry
        entry["records"]["entropy"][0][0] += 5.0  # not compared: the identity changed


@scenario
def prompts_missing_removed_and_renamed(g: Doc, o: Doc) -> None:
    entry = p(o)
    o["prompts"] = {"renamed": entry, "new": {**copy.deepcopy(entry), "sha256": "new"}}
    g["prompts"]["gone"] = {**copy.deepcopy(entry), "sha256": "gone"}
    entry["final_prediction"]["entropy"] += 1.0  # compared under the new id


@scenario
def only_some_sections(g: Doc, o: Doc) -> dict[str, Any]:
    p(o)["records"]["entropy"][1][2] += 0.5
    p(o)["final_prediction"]["entropy"] += 1.0
    o["model_stats"]["n_heads"] = 8
    return {"sections": ("records", "trajectory")}


@scenario
def model_and_class_names(g: Doc, o: Doc) -> dict[str, Any]:
    o["model"] = "mine"
    o["class"] = "cuda-float16"
    g["class"] = "cpu-float32"
    del o["facts"]
    return {"tol": FP32, "tolerance_note": "loosest of two classes"}


# ------------------------------------------------------------------------------ test


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_whole_report(name: str, golden: Doc, run: Doc, snapshot: Any) -> None:
    kwargs = SCENARIOS[name](golden, run) or {}
    report = compare_golden(golden, run, kwargs.pop("tol", TOL), **kwargs)
    assert report_fields(report) == snapshot


def test_every_section_is_exercised_by_some_scenario(golden: Doc, run: Doc) -> None:
    """The battery moves a value of every section and of every kind of drift."""
    sections, kinds = set(), set()
    for edit in SCENARIOS.values():
        g, o = copy.deepcopy(golden), copy.deepcopy(run)
        kwargs = edit(g, o) or {}
        report = compare_golden(g, o, kwargs.pop("tol", TOL), **kwargs)
        for kind in ("drifts", "near_ties", "outliers"):
            found = getattr(report, kind)
            sections |= {d.section for d in found}
            kinds |= {kind} if found else set()
    from lenscheck.golden.compare import SECTIONS

    assert sections == set(SECTIONS)
    assert kinds == {"drifts", "near_ties", "outliers"}
