"""Tests that kill mutants `nox -s mutation` found alive (see docs/mutation.md).

Each test pins a value the mutated code would change: an exact drift list, an exact
record, an exact message. None exists only to execute a line.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from _lens_fixtures import ORIGINAL_TOP_LEVEL_KEYS, make_fake_backend

from lenscheck.golden.compare import Drift, DriftReport, _key_paths, compare_golden
from lenscheck.golden.tolerances import Tolerances

# ===================================================================== golden/compare.py

# Dyadic tolerances and values: the "at the tolerance" cases are exact in binary.
TOL = Tolerances(entropy=0.25, p_top1=0.125, final_prob=0.0625, near_tie=0.5, kl_consistency=1e-6)


def _golden() -> dict[str, Any]:
    return {
        "format_version": 1,
        "model": "golden-model",
        "class": "cpu-float32",
        "environment": {"lenscheck": "0.1.0"},
        "schema": {
            "records_header": "layer,pos",
            "pure_header": "layer,pos,copy_collapse",
            "json_keys": {
                "prompt": {"type": "str"},
                "diagnostics": {"L_copy": "int", "versions": {"torch": "str"}},
                "test_prompts": [{"entropy": "float"}],
            },
        },
        "model_stats": {"num_layers": 2, "d_vocab": 10},
        "tokenization": {"prepend_bos": True, "input_ids": [1, 2]},
        "collapse": {"L_copy": 1, "L_copy_H": None, "L_semantic": 2, "delta_layers": 1},
        "final_prediction": {"entropy": 1.0, "top5": [["x", 0.5], ["y", 0.25]]},
        "trajectory": [
            {"layer": 0, "top1": "a", "p_top1": 0.75, "p_top2": 0.125, "entropy": 2.0},
            {"layer": 1, "top1": "b", "p_top1": 0.75, "p_top2": 0.125, "entropy": 1.5},
            {"layer": 2, "top1": "c", "p_top1": 0.75, "p_top2": 0.125, "entropy": 1.0},
        ],
    }


def _observed() -> dict[str, Any]:
    obs = _golden()
    obs["model"] = "run-model"
    obs["class"] = "cuda-float16"
    return obs


def _cmp(golden: dict[str, Any], observed: dict[str, Any], **kw: Any) -> DriftReport:
    return compare_golden(golden, observed, TOL, **kw)


def test_identical_payloads_give_an_empty_report_with_its_context() -> None:
    golden, observed = _golden(), _observed()
    report = _cmp(golden, observed, tolerance_note="note")
    assert report.ok is True
    assert report.drifts == [] and report.near_ties == []
    assert (report.model, report.golden_class, report.run_class) == (
        "run-model",
        "cpu-float32",
        "cuda-float16",
    )
    assert report.tolerance_note == "note"
    assert report.golden is golden and report.observed is observed
    assert report.first_divergence() is None


def test_report_without_model_or_class_says_none() -> None:
    report = compare_golden({}, {}, TOL, sections=())
    assert (report.model, report.golden_class, report.run_class) == ("None", "None", "None")
    assert report.tolerance_note == ""


def test_drift_delta_only_for_two_numbers() -> None:
    assert Drift("s", "m", 1, 3.5).delta == 2.5
    assert Drift("s", "m", 3.5, 1).delta == 2.5
    assert Drift("s", "m", "a", "b").delta is None
    assert Drift("s", "m", 1.0, "b").delta is None
    assert Drift("s", "m", "a", 1.0).delta is None
    d = Drift("s", "m", 1, 2)
    assert (d.tolerance, d.layer) == (0, None)


def test_section_and_first_divergence() -> None:
    flat = Drift("collapse", "L_copy", 1, 2)
    late = Drift("trajectory", "p_top1", 0.1, 0.5, 0.02, 3)
    early_p = Drift("trajectory", "p_top1", 0.1, 0.5, 0.02, 1)
    early_e = Drift("trajectory", "entropy", 1.0, 2.0, 0.01, 1)
    report = DriftReport("m", "a", "b", "", drifts=[flat, late, early_p, early_e])
    assert report.ok is False
    assert report.section("trajectory") == [late, early_p, early_e]
    assert report.section("collapse") == [flat]
    assert report.section("schema") == []
    assert report.first_divergence() is early_e  # lowest layer, then metric name
    second = Drift("schema", "x", 1, 2)
    assert DriftReport("m", "a", "b", "", drifts=[flat, second]).first_divergence() is flat
    layer0 = Drift("trajectory", "top1", "a", "b", 0.05, 0)
    assert DriftReport("m", "a", "b", "", drifts=[flat, layer0]).first_divergence() is layer0


def test_key_paths_flatten_dicts_and_lists() -> None:
    tree = {"a": {"b": "int"}, "c": [{"d": "str"}], "e": [], "f": "null"}
    assert _key_paths(tree) == {"a.b": "int", "c[].d": "str", "e": "[]", "f": "null"}
    assert _key_paths("int") == {"": "int"}
    assert _key_paths([]) == {"": "[]"}
    assert _key_paths(["float"]) == {"[]": "float"}
    assert _key_paths({"x": ["str"]}, "p") == {"p.x[]": "str"}
    assert _key_paths(["float"], "p") == {"p[]": "float"}


def test_model_stats_changes_are_exact_drifts_in_key_order() -> None:
    golden, observed = _golden(), _observed()
    observed["model_stats"] = {"num_layers": 3, "d_vocab": 12, "n_ctx": 64}
    report = _cmp(golden, observed, sections=("model_stats",))
    assert report.drifts == [
        Drift("model_stats", "d_vocab", 10, 12),
        Drift("model_stats", "n_ctx", None, 64),
        Drift("model_stats", "num_layers", 2, 3),
    ]
    lenient = _cmp(golden, observed, sections=("model_stats",), lenient=True)
    assert lenient.drifts == [
        Drift("model_stats", "d_vocab", 10, 12),
        Drift("model_stats", "num_layers", 2, 3),
    ]
    gone = _observed()
    gone["model_stats"] = {"num_layers": 2}
    assert _cmp(golden, gone, sections=("model_stats",)).drifts == [
        Drift("model_stats", "d_vocab", 10, None)
    ]
    assert _cmp(golden, gone, sections=("model_stats",), lenient=True).drifts == []


def test_tokenization_section_compares_ids() -> None:
    observed = _observed()
    observed["tokenization"]["input_ids"] = [1, 3]
    report = _cmp(_golden(), observed, sections=("tokenization",))
    assert report.drifts == [Drift("tokenization", "input_ids", [1, 2], [1, 3])]


def test_schema_json_keys_compare_path_by_path() -> None:
    golden, observed = _golden(), _observed()
    keys = observed["schema"]["json_keys"]
    keys["diagnostics"]["L_copy"] = "float"  # type change
    keys["diagnostics"]["new_key"] = "int"  # added
    del keys["prompt"]  # removed
    keys["diagnostics"]["versions"]["transformer-lens"] = "str"  # environment: ignored
    observed["schema"]["records_header"] = "layer,pos,extra"
    report = _cmp(golden, observed, sections=("schema",))
    assert report.drifts == [
        Drift("schema", "json key diagnostics.L_copy", "int", "float"),
        Drift("schema", "json key diagnostics.new_key", "absent", "int"),
        Drift("schema", "json key prompt.type", "str", "absent"),
        Drift("schema", "records_header", "layer,pos", "layer,pos,extra"),
    ]
    lenient = _cmp(golden, observed, sections=("schema",), lenient=True)
    assert lenient.drifts == [
        Drift("schema", "json key diagnostics.L_copy", "int", "float"),
        Drift("schema", "json key prompt.type", "str", "absent"),
        Drift("schema", "records_header", "layer,pos", "layer,pos,extra"),
    ]


def test_versions_keys_are_environment_not_schema() -> None:
    golden, observed = _golden(), _observed()
    del observed["schema"]["json_keys"]["diagnostics"]["versions"]["torch"]
    observed["schema"]["json_keys"]["diagnostics"]["versions"]["jax"] = "str"
    assert _cmp(golden, observed, sections=("schema",)).drifts == []
    # Only the versions block: a sibling key whose name merely starts alike still counts.
    observed["schema"]["json_keys"]["diagnostics"]["versions_note"] = "str"
    assert _cmp(golden, observed, sections=("schema",)).drifts == [
        Drift("schema", "json key diagnostics.versions_note", "absent", "str")
    ]


@pytest.mark.parametrize(
    ("allowance", "l_copy", "expected"),
    [(0, 1, False), (0, 2, True), (1, 2, False), (1, 3, True), (1, 0, False), (1, -1, True)],
)
def test_collapse_allowance_is_inclusive(allowance: int, l_copy: int, expected: bool) -> None:
    observed = _observed()
    observed["collapse"]["L_copy"] = l_copy
    report = _cmp(_golden(), observed, sections=("collapse",), collapse_allowance=allowance)
    want = [Drift("collapse", "L_copy", 1, l_copy, allowance)] if expected else []
    assert report.drifts == want


def test_collapse_none_against_a_layer_is_drift_every_key() -> None:
    observed = _observed()
    observed["collapse"] = {"L_copy": None, "L_copy_H": 4, "L_semantic": 2, "delta_layers": 7}
    report = _cmp(_golden(), observed, sections=("collapse",), collapse_allowance=2)
    assert report.drifts == [
        Drift("collapse", "L_copy", 1, None, 2),
        Drift("collapse", "L_copy_H", None, 4, 2),
        Drift("collapse", "delta_layers", 1, 7, 2),
    ]


def test_final_prediction_entropy_and_probabilities() -> None:
    golden, observed = _golden(), _observed()
    observed["final_prediction"] = {"entropy": 1.25, "top5": [["x", 0.5625], ["y", 0.1875]]}
    assert _cmp(golden, observed, sections=("final_prediction",)).drifts == []
    observed["final_prediction"] = {"entropy": 1.5, "top5": [["x", 0.5], ["y", 0.375]]}
    report = _cmp(golden, observed, sections=("final_prediction",))
    assert report.drifts == [
        Drift("final_prediction", "entropy", 1.0, 1.5, 0.25),
        Drift("final_prediction", "p(top2 'y')", 0.25, 0.375, 0.0625),
    ]
    observed["final_prediction"] = {"entropy": 1.0, "top5": [["x", 0.25], ["y", 0.25]]}
    report = _cmp(golden, observed, sections=("final_prediction",))
    assert report.drifts == [Drift("final_prediction", "p(top1 'x')", 0.5, 0.25, 0.0625)]


def test_final_prediction_token_change_is_one_drift() -> None:
    observed = _observed()
    observed["final_prediction"]["top5"] = [["y", 0.9], ["x", 0.01]]
    report = _cmp(_golden(), observed, sections=("final_prediction",))
    assert report.drifts == [Drift("final_prediction", "top5 tokens", ["x", "y"], ["y", "x"])]


def test_close_treats_nan_as_drift() -> None:
    observed = _observed()
    observed["final_prediction"]["entropy"] = math.nan
    (drift,) = _cmp(_golden(), observed, sections=("final_prediction",)).drifts
    assert (drift.metric, drift.golden, drift.tolerance) == ("entropy", 1.0, 0.25)
    assert math.isnan(drift.observed)


def test_trajectory_layer_count() -> None:
    observed = _observed()
    observed["trajectory"] = observed["trajectory"][:2]
    report = _cmp(_golden(), observed, sections=("trajectory",))
    assert report.drifts == [Drift("trajectory", "layer count", 3, 2)]
    assert report.near_ties == []


def test_trajectory_metrics_with_tolerances_and_layers() -> None:
    golden, observed = _golden(), _observed()
    rows = observed["trajectory"]
    rows[0]["entropy"] = 2.25  # at the tolerance: fine
    rows[0]["p_top1"] = 0.625  # at the tolerance: fine
    rows[1]["entropy"] = 1.0
    rows[2]["p_top1"] = 1.0
    rows[2]["layer"] = 5
    report = _cmp(golden, observed, sections=("trajectory",))
    assert report.drifts == [
        Drift("trajectory", "entropy", 1.5, 1.0, 0.25, 1),
        Drift("trajectory", "layer index", 2, 5, 0, 2),
        Drift("trajectory", "p_top1", 0.75, 1.0, 0.125, 2),
    ]
    assert report.first_divergence() == Drift("trajectory", "entropy", 1.5, 1.0, 0.25, 1)


def test_trajectory_top1_change_near_tie_or_drift() -> None:
    golden = _golden()
    golden["trajectory"][0]["p_top2"] = 0.375  # gap 0.375 < near_tie 0.5: near-tie
    golden["trajectory"][1]["p_top2"] = 0.25  # gap 0.5, not below: drift
    observed = copy.deepcopy(golden)
    for row in observed["trajectory"]:
        row["top1"] = "z"
        row["p_top2"] = 0.0  # the golden's gap decides, not the run's
    report = _cmp(golden, observed, sections=("trajectory",))
    assert report.near_ties == [Drift("trajectory", "top1", "a", "z", 0.5, 0)]
    assert report.drifts == [
        Drift("trajectory", "top1", "b", "z", 0.5, 1),
        Drift("trajectory", "top1", "c", "z", 0.5, 2),
    ]
    assert report.ok is False


def test_sections_select_what_is_compared() -> None:
    golden = _golden()
    observed = copy.deepcopy(golden)
    observed["model_stats"]["num_layers"] = 9
    observed["tokenization"]["prepend_bos"] = False
    observed["schema"]["pure_header"] = "x"
    observed["collapse"]["L_copy"] = 9
    observed["final_prediction"]["entropy"] = 9.0
    observed["trajectory"][0]["entropy"] = 9.0
    everything = compare_golden(golden, observed, TOL)
    assert [(d.section, d.metric) for d in everything.drifts] == [
        ("schema", "pure_header"),
        ("model_stats", "num_layers"),
        ("tokenization", "prepend_bos"),
        ("collapse", "L_copy"),
        ("final_prediction", "entropy"),
        ("trajectory", "entropy"),
    ]
    for name in ("schema", "model_stats", "tokenization", "collapse", "final_prediction"):
        only = compare_golden(golden, observed, TOL, sections=(name,))
        assert [d.section for d in only.drifts] == [name]
    only = compare_golden(golden, observed, TOL, sections=("trajectory",))
    assert [d.section for d in only.drifts] == ["trajectory"]


# ============================================================================== lens.py
#
# The slow embedded-model tests pin the JSON against the published files; these pin the same
# structure on the model-free FakeBackend, against values computed here independently.

PROBES = ("The capital of Germany is", "Berlin is the capital of")
PROMPT = "Give the city name only, plain text. The capital of Germany is"  # ends on " is"


def _lens_cfg(**changes: Any) -> Any:
    from lenscheck.config import LensConfig

    return LensConfig(**{"prompt": PROMPT, "test_prompts": PROBES, **changes})


def _bits(logits: Any) -> float:
    import torch

    p = torch.softmax(logits.double(), dim=-1)
    return float(-(p * torch.log2(p)).sum())


def _top(fb: Any, logits: Any, k: int) -> list[list[Any]]:
    import torch

    p = torch.softmax(logits.double(), dim=-1)
    order = torch.argsort(logits, descending=True)[:k].tolist()
    return [[fb.decode(i), float(p[i])] for i in order]


def _same_pairs(got: list[list[Any]], want: list[list[Any]]) -> None:
    assert [t for t, _ in got] == [t for t, _ in want]
    assert [p for _, p in got] == pytest.approx([p for _, p in want], abs=1e-6)


def _expected_lens_logits(fb: Any, ids: list[int]) -> tuple[list[Any], Any]:
    """Per lens layer, the logits through the norm the model applies there (by hand)."""
    import torch

    residuals, model_logits = fb.forward(ids)
    blocks = fb.stack.blocks
    if fb.stack.architecture == "pre_norm":
        norms = [b.ln1 for b in blocks] + [fb.stack.ln_final]
    else:
        norms = [blocks[0].ln1] + [b.ln2 for b in blocks]
    w = fb.lm_weight.float()
    with torch.no_grad():
        return [norm(r) @ w.T for norm, r in zip(norms, residuals)], model_logits


def _verbose(tokens: list[str]) -> set[int]:
    words = ("germany", "berlin", "capital", "answer", "word", "simply")
    out = {len(tokens) - 1}
    out |= {i for i, t in enumerate(tokens) if any(w in t.lower().strip(".,!?;:") for w in words)}
    return out


def test_fake_run_records_and_probes_match_an_independent_computation() -> None:
    from lenscheck.lens import NEXT_TOKEN, run_lens

    fb = make_fake_backend(n_layers=3)
    result = run_lens(fb, _lens_cfg())
    ids = fb.encode(PROMPT)
    assert result.input_ids == ids
    lens, model_logits = _expected_lens_logits(fb, ids)
    tokens = [fb.token_text(i) for i in ids]
    verbose = _verbose(tokens)
    assert len(tokens) - 1 in verbose and tokens[-1] == " is"  # last position, no keyword
    n = 0
    for layer, logits in enumerate(lens):
        for pos in range(len(ids)):
            rec = result.records[n]
            n += 1
            assert list(rec) == ["type", "layer", "pos", "token", "entropy", "topk"]
            assert (rec["type"], rec["layer"], rec["pos"], rec["token"]) == (
                "record",
                layer,
                pos,
                tokens[pos],
            )
            assert rec["entropy"] == pytest.approx(_bits(logits[pos]), abs=1e-4)
            _same_pairs(rec["topk"], _top(fb, logits[pos], 20 if pos in verbose else 5))
    assert n == len(result.records)
    for layer, (rec, logits) in enumerate(zip(result.pure_records, lens)):
        assert list(rec) == [
            "type",
            "layer",
            "pos",
            "token",
            "entropy",
            "topk",
            "copy_collapse",
            "entropy_collapse",
            "is_answer",
        ]
        assert (rec["type"], rec["layer"], rec["pos"], rec["token"]) == (
            "pure_next_token_record",
            layer,
            len(ids) - 1,
            NEXT_TOKEN,
        )
        assert rec["entropy"] == pytest.approx(_bits(logits[-1]), abs=1e-4)
        _same_pairs(rec["topk"], _top(fb, logits[-1], 5))
    # The probes: the model's own next-token distribution, at T = 1, 0.1 and 2.
    tests = result.json_data["test_prompts"]
    assert [list(t) for t in tests] == [["type", "prompt", "entropy", "topk"]] * len(PROBES)
    for probe, got in zip(PROBES, tests):
        logits = fb.forward(fb.encode(probe))[1][-1]
        assert (got["type"], got["prompt"]) == ("test_prompt", probe)
        assert got["entropy"] == pytest.approx(_bits(logits), abs=1e-4)
        _same_pairs(got["topk"], _top(fb, logits, 10))
    final = model_logits[-1]
    temps = result.json_data["temperature_exploration"]
    assert [(t["type"], t["temperature"]) for t in temps] == [
        ("temperature_exploration", 0.1),
        ("temperature_exploration", 2.0),
    ]
    for t in temps:
        assert list(t) == ["type", "temperature", "entropy", "topk"]
        assert t["entropy"] == pytest.approx(_bits(final / t["temperature"]), abs=1e-4)
        _same_pairs(t["topk"], _top(fb, final / t["temperature"], 15))
    fp = result.json_data["final_prediction"]
    assert list(fp) == ["type", "entropy", "topk"] and fp["type"] == "final_prediction"
    assert fp["entropy"] == pytest.approx(_bits(final), abs=1e-4)
    _same_pairs(fp["topk"], _top(fb, final, 20))
    # p(answer) per layer: the lens' next-token probability of " Berlin" (id 2).
    import torch

    want = [float(torch.softmax(lg[-1].double(), -1)[2]) for lg in lens]
    assert result.extras["p_ground_truth"] == pytest.approx(want, abs=1e-6)


def test_fake_run_json_skeleton_and_diagnostics_are_exact() -> None:
    from lenscheck import __version__
    from lenscheck.lens import run_lens
    from lenscheck.prompts import TARGET_PREDICTION

    fb = make_fake_backend(n_layers=3)
    result = run_lens(fb, _lens_cfg(copy_threshold=0.8, copy_margin=0.1))
    data = result.json_data
    ids = result.input_ids
    assert list(data) == ORIGINAL_TOP_LEVEL_KEYS
    assert data["prompt"] == {"type": "prompt", "context_prompt": PROMPT, "ground_truth": "Berlin"}
    assert data["model_stats"] == {
        "type": "model_stats",
        "num_layers": 3,
        "d_model": 16,
        "n_heads": 2,
        "d_vocab": 24,
        "n_ctx": 64,
        "architecture": "pre_norm",
    }
    diag = dict(data["diagnostics"])
    consistency = diag.pop("last_layer_consistency")
    assert list(consistency) == ["kl_bits_last_pos", "kl_bits_max", "top1_agree"]
    assert consistency["kl_bits_max"] < 1e-6 and consistency["top1_agree"] is True
    expected = {
        "type": "diagnostics",
        "model": "fake/pre_norm-layernorm",
        "device": "cpu",
        "use_norm_lens": True,
        "use_fp32_unembed": True,
        "unembed_dtype": "torch.float32",
        "first_block_ln1_type": "LayerNorm",
        "final_ln_type": "LayerNorm",
        "layernorm_bias_fix": "active",
        "norm_alignment_fix": "using_ln2_layernorm_for_post_block",
        "layer0_norm_fix": "using_real_ln1_on_embeddings",
        "mixed_precision_fix": "casting_to_fp32_before_unembed",
        "layer0_position_info": "token_only_rotary_model",
        "context_prompt": PROMPT,
        "target_prediction": TARGET_PREDICTION,
        "L_copy": diag["L_copy"],
        "L_copy_H": diag["L_copy_H"],
        "L_semantic": diag["L_semantic"],
        "delta_layers": diag["delta_layers"],
        "backend": "fake",
        "model_source": "hub",
        "versions": {"lenscheck": __version__, "fake": "0"},
        "compute_dtype": "torch.float32",
        "architecture": "pre_norm",
        "model_class": "FakeForCausalLM",
        "tokenization": {"prepend_bos": True, "n_tokens": len(ids), "input_ids": ids},
        "copy_threshold": 0.8,
        "copy_margin": 0.1,
        "ground_truth_token_ids": [2],
        "ground_truth_single_token": True,
    }
    assert diag == expected
    assert list(diag) == list(expected)
    assert TARGET_PREDICTION == "first unseen token (likely 'Berlin')"
    flags = [
        (r["copy_collapse"], r["entropy_collapse"], r["is_answer"]) for r in result.pure_records
    ]

    def first(i: int) -> int | None:
        return next((n for n, f in enumerate(flags) if f[i]), None)

    assert (diag["L_copy"], diag["L_copy_H"], diag["L_semantic"]) == (first(0), first(1), first(2))


def test_diagnostics_follow_the_norms_and_the_model() -> None:
    import dataclasses

    import torch

    from lenscheck.lens import run_lens

    fb = make_fake_backend(architecture="post_norm", norm="rmsnorm", n_layers=2)
    fb.facts = dataclasses.replace(fb.facts, has_pos_embed=True)
    fb.dtype = torch.float16  # what the backend reports; the fake still computes in fp32
    fb.unembed = type(fb.unembed)(
        weight=fb.lm_weight.half(), bias=None, softcap=None, promote=False
    )
    diag = run_lens(fb, _lens_cfg(test_prompts=PROBES[:1])).diagnostics
    assert (diag["first_block_ln1_type"], diag["final_ln_type"]) == ("RMSNorm", None)
    assert diag["layernorm_bias_fix"] == "not_needed_rms_model"
    assert diag["norm_alignment_fix"] == "using_ln2_rmsnorm_for_post_block"
    assert diag["layer0_position_info"] == "additive_pos_embed_included"
    assert (diag["use_fp32_unembed"], diag["unembed_dtype"]) == (False, "torch.float16")
    assert (diag["compute_dtype"], diag["architecture"]) == ("torch.float16", "post_norm")

    # Block 0 decides, not block 1: give them different norms.
    fb = make_fake_backend(norm="layernorm", n_layers=2)
    fb.stack.blocks[1].ln1 = torch.nn.RMSNorm(16)
    fb.stack.blocks[0].ln2 = None  # a pre-norm lens never uses ln2
    diag = run_lens(fb, _lens_cfg(test_prompts=PROBES[:1])).diagnostics
    assert (diag["first_block_ln1_type"], diag["layernorm_bias_fix"]) == ("LayerNorm", "active")
    assert diag["norm_alignment_fix"] == "fallback_to_ln1"
    fb = make_fake_backend(norm="rmsnorm", n_layers=2)
    fb.stack.blocks[1].ln1 = torch.nn.LayerNorm(16)
    fb.stack.blocks[1].ln2 = torch.nn.LayerNorm(16)
    diag = run_lens(fb, _lens_cfg(test_prompts=PROBES[:1])).diagnostics
    assert (diag["first_block_ln1_type"], diag["layernorm_bias_fix"]) == (
        "RMSNorm",
        "not_needed_rms_model",
    )
    assert diag["norm_alignment_fix"] == "using_ln2_rmsnorm_for_post_block"


def test_zero_block_model_reads_only_the_final_norm() -> None:
    from lenscheck.lens import run_lens

    fb = make_fake_backend(n_layers=0)
    result = run_lens(fb, _lens_cfg(test_prompts=PROBES[:1]))
    diag = result.diagnostics
    assert (diag["first_block_ln1_type"], diag["final_ln_type"]) == (None, "LayerNorm")
    assert diag["layernorm_bias_fix"] == "not_needed_rms_model"
    assert diag["norm_alignment_fix"] == "fallback_to_ln1"
    assert [r["layer"] for r in result.pure_records] == [0]
    assert diag["last_layer_consistency"]["kl_bits_max"] < 1e-6


def test_pure_records_flags_on_constructed_statistics() -> None:
    import torch

    from lenscheck.lens import _pure_records

    fb = make_fake_backend()
    cfg = _lens_cfg(copy_threshold=0.3, copy_margin=0.2)
    # Vocabulary ids: 2 " Berlin", 3 " Germany", 5 " the", 6 " of". Two positions; the last
    # one (pos 1) is what the pure records read, pos 0 is a decoy.
    last = [
        ([5, 6, 3, 4, 7], [0.95, 0.01, 0.01, 0.01, 0.01], 2.0),  # echo of prompt id 5
        ([3, 6, 5, 4, 7], [0.5, 0.3, 0.1, 0.05, 0.01], 1.0),  # H == 1 bit: H-collapse only
        ([2, 5, 6, 4, 7], [0.6, 0.3, 0.05, 0.02, 0.01], 0.5),  # answer; fallback copy
        ([5, 6, 3, 4, 7], [0.45, 0.3, 0.1, 0.05, 0.01], 1.5),  # margin 0.15 < 0.2: no echo
    ]
    decoy = ([4, 7, 9, 10, 11], [0.2, 0.1, 0.1, 0.1, 0.1], 9.0)
    top_ids = [[decoy[0], row[0]] for row in last]
    top_p = [[decoy[1], row[1]] for row in last]
    ent = torch.tensor([[decoy[2], row[2]] for row in last])
    recs = _pure_records(fb, cfg, {5}, ent, top_ids, top_p)
    assert [(r["copy_collapse"], r["entropy_collapse"], r["is_answer"]) for r in recs] == [
        (True, False, False),
        (False, True, False),
        (True, True, True),
        (False, False, False),
    ]
    assert [r["pos"] for r in recs] == [1, 1, 1, 1]
    assert [r["entropy"] for r in recs] == [2.0, 1.0, 0.5, 1.5]
    assert recs[2]["topk"] == [
        [" Berlin", 0.6],
        [" the", 0.3],
        [" of", 0.05],
        [" capital", 0.02],
        [" is", 0.01],
    ]


def test_consistency_reads_the_last_position() -> None:
    import torch

    from lenscheck.lens import _consistency
    from lenscheck.numerics import kl_bits

    model = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    lens = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.2]])
    kl = kl_bits(model, lens)
    assert kl[0] < 1e-7 < kl[2] < kl[1]  # three different values
    got = _consistency(lens, model)
    assert got == {
        "kl_bits_last_pos": float(kl[2]),
        "kl_bits_max": float(kl[1]),
        "top1_agree": True,
    }
    lens[1] = torch.tensor([0.0, 0.0, 4.0])
    assert _consistency(lens, model)["top1_agree"] is False


def test_p_answer_per_layer() -> None:
    import torch

    from lenscheck.lens import _p_answer

    next_token = torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0], [5.0, 0.0, 0.0, 0.0]])
    want = torch.softmax(next_token, dim=-1)[:, 2].tolist()
    assert _p_answer(next_token, {"ground_truth_token_ids": [2, 0]}) == pytest.approx(want)
    assert _p_answer(next_token, {"ground_truth_token_ids": []}) == [0.0, 0.0, 0.0]


def test_lens_errors_and_warnings_word_for_word(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from lenscheck.lens import NonFiniteResidualError, run_lens

    fb = make_fake_backend()

    def corrupt(residuals: list[Any]) -> None:
        residuals[1][0, 0] = math.nan

    fb.corrupt = corrupt
    with pytest.raises(NonFiniteResidualError) as info:
        run_lens(fb, _lens_cfg())
    assert str(info.value) == (
        "residual at lens layer 1 contains NaN (dtype torch.float32); fp16 overflow is the "
        "usual cause: rerun with --dtype bfloat16 or float32 (pytest: --lens-dtype)"
    )
    fb.corrupt = None
    with caplog.at_level(logging.WARNING, logger="lenscheck.lens"):
        run_lens(fb, _lens_cfg(ground_truth="Ber lin"))
    assert [r.getMessage() for r in caplog.records if r.name == "lenscheck.lens"] == [
        "ground truth 'Ber lin' tokenizes to 2 pieces; is_answer compares the top-1 text "
        "with the whole string"
    ]


# ===================================================================== numerics / collapse


def test_entropy_rejects_a_batch_naming_what_it_got() -> None:
    import torch

    from lenscheck.numerics import bits_entropy_from_logits

    with pytest.raises(ValueError) as info:
        bits_entropy_from_logits(torch.zeros(2, 3))
    assert str(info.value) == (
        "logits must be a 1-D tensor of vocabulary logits, got Tensor of shape (2, 3) and "
        "dtype torch.float32"
    )


def test_copy_collapse_argument_errors_word_for_word() -> None:
    import torch

    from lenscheck.collapse import detect_copy_collapse

    with pytest.raises(ValueError) as info:
        detect_copy_collapse([0.1, 0.2], [0], copy_threshold=0.9, copy_margin=0.05)  # type: ignore[arg-type]
    assert str(info.value) == (
        "logits must be a 1-D tensor with >= 2 entries, got [0.1, 0.2] (list)"
    )
    with pytest.raises(ValueError) as info:
        detect_copy_collapse(torch.zeros(1), [0], copy_threshold=0.9, copy_margin=0.05)
    assert str(info.value).endswith("got Tensor of shape (1,) and dtype torch.float32")
    logits = torch.tensor([3.0, 0.0])
    with pytest.raises(ValueError) as info:
        detect_copy_collapse(logits, [0], copy_threshold=1.5, copy_margin=0.05)
    assert str(info.value) == "copy_threshold must be in [0, 1], got 1.5"
    with pytest.raises(ValueError) as info:
        detect_copy_collapse(logits, [0], copy_threshold=0.5, copy_margin=-0.5)
    assert str(info.value) == "copy_margin must be in [0, 1], got -0.5"


# ================================================================================ schema


def test_record_without_topk_is_a_padded_row() -> None:
    from lenscheck.schema import CsvRow, record_row

    row = record_row({"layer": 1, "pos": 2, "token": "a", "entropy": 0.5})
    assert row == CsvRow(1, 2, "a", 0.5, (), 1.0, ())
    assert row.cells(2) == [1, 2, "a", 0.5, "", "", "", "", 1.0]


def test_write_csv_files_honours_top_k_verbose_for_both_files(tmp_path: Path) -> None:
    from lenscheck.schema import csv_header, read_csv, write_csv_files

    rec = {"layer": 0, "pos": 0, "token": "a", "entropy": 1.0, "topk": [["x", 0.5]]}
    pure = {**rec, "copy_collapse": False, "entropy_collapse": True, "is_answer": False}
    data = {"records": [rec], "pure_next_token_records": [pure]}
    write_csv_files(data, tmp_path / "r.csv", tmp_path / "p.csv", 3)
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == ",".join(csv_header("records", 3))
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == ",".join(csv_header("pure", 3))
    assert read_csv(tmp_path / "p.csv").rows[0].flags == (False, True, False)
    with pytest.raises(ValueError) as info:
        write_csv_files(data, tmp_path / "r.csv", tmp_path / "p.csv", 0)
    assert str(info.value) == "top_k_verbose must be >= 1, got 0"


def _violations(n: int) -> list[Any]:
    from lenscheck.schema import SchemaViolation

    return [SchemaViolation("f.csv", i, "entropy", "bad") for i in range(1, n + 1)]


@pytest.mark.parametrize("n", [1, 20, 21, 23])
def test_schema_error_lists_twenty_violations_then_counts(n: int) -> None:
    from lenscheck.schema import CsvSchemaError

    err = CsvSchemaError(_violations(n))
    shown = [f"f.csv: row {i}, column 'entropy': bad" for i in range(1, min(n, 20) + 1)]
    tail = [f"... and {n - 20} more"] if n > 20 else []
    assert str(err) == f"{n} schema violation(s):\n  " + "\n  ".join(shown + tail)
    assert len(err.violations) == n


# ======================================================== norms: TransformerLens 3 modules
#
# TransformerLens 4 removed HookedTransformer's norm components (test_norms skips their
# test here); `nox -s compat` still runs TL 3.9. These stand-ins reproduce TL 3.9's classes
# (name, module, attributes w / b / eps and forward) so the TL branch of norm_spec is pinned.


def _tl3_class(name: str) -> type:
    import torch

    def forward(self: Any, x: Any) -> Any:
        if name.startswith("LayerNorm"):
            x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        if hasattr(self, "w"):
            x = x * self.w
        if hasattr(self, "b"):
            x = x + self.b
        return x

    def init(self: Any, d: int, eps: float) -> None:
        torch.nn.Module.__init__(self)
        gen = torch.Generator().manual_seed(len(name))
        self.eps = eps
        if not name.endswith("Pre"):
            self.w = torch.nn.Parameter(1 + torch.randn(d, generator=gen))
        if name == "LayerNorm":
            self.b = torch.nn.Parameter(torch.randn(d, generator=gen))

    cls = type(name, (torch.nn.Module,), {"__init__": init, "forward": forward})
    cls.__module__ = f"transformer_lens.components.{name.lower()}"
    return cls


@pytest.mark.parametrize(
    ("name", "kind", "has_w", "has_b"),
    [
        ("LayerNorm", "layernorm", True, True),
        ("LayerNormPre", "layernorm", False, False),
        ("RMSNorm", "rmsnorm", True, False),
        ("RMSNormPre", "rmsnorm", False, False),
    ],
)
def test_transformer_lens_3_norms(name: str, kind: str, has_w: bool, has_b: bool) -> None:
    import torch

    from lenscheck.norms import apply_norm_or_skip, norm_spec

    module = _tl3_class(name)(8, 0.5)  # a large eps: dropping it would show
    spec = norm_spec(module)
    assert (spec.kind, spec.class_name, spec.eps) == (kind, name, 0.5)
    assert (spec.weight is module.w) if has_w else spec.weight is None
    assert (spec.bias is module.b) if has_b else spec.bias is None
    assert (spec.weight_offset, spec.cast_before_scale) == (0.0, False)
    x = 0.3 * torch.randn(5, 8, generator=torch.Generator().manual_seed(1)) + 0.2
    with torch.no_grad():
        torch.testing.assert_close(apply_norm_or_skip(x, module), module(x), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------- schema: the reader


def _cells(layer: int = 0, pos: str = "3", probs: tuple[str, str] = ("0.5", "0.25")) -> list[str]:
    """A records row with two (token, prob) pairs, 18 padding pairs and rest_mass 0.25."""
    return [str(layer), pos, "tok", "1.25", "a", probs[0], "b", probs[1], *[""] * 36, "0.25"]


def _csv(tmp_path: Path, rows: list[list[str]], header: str | None = None) -> Path:
    from lenscheck.schema import csv_header

    path = tmp_path / "t.csv"
    lines = [header if header is not None else ",".join(csv_header("records"))]
    lines += [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _found(tmp_path: Path, rows: list[list[str]]) -> list[tuple[int, str, str]]:
    from lenscheck.schema import validate_csv

    path = _csv(tmp_path, rows)
    violations = validate_csv(path)
    assert all(v.path == str(path) for v in violations)
    return [(v.row, v.column, v.message) for v in violations]


def test_reader_violations_are_exact(tmp_path: Path) -> None:
    row = _cells()
    assert _found(tmp_path, [row]) == []
    assert _found(tmp_path, [_cells(pos="-2")]) == [
        (1, "pos", "expected a value in [0, inf], found '-2'")
    ]
    assert _found(tmp_path, [["-1", *row[1:]]]) == [
        (1, "layer", "expected a value in [0, inf], found '-1'")
    ]
    assert _found(tmp_path, [[*row[:44], "1.5"]]) == [
        (1, "rest_mass", "expected a value in [0.0, 1.0], found '1.5'")
    ]
    after_padding = [*row[:8], "", "", "c", "0.125", *row[12:]]
    assert _found(tmp_path, [after_padding]) == [
        (1, "prob4", "a (token, prob) pair after empty padding cells")
    ]
    # A token whose probability is gone: one violation, not also a rest_mass one.
    assert _found(tmp_path, [[*row[:7], "", *row[8:]]]) == [
        (1, "top2", "token 'b' without a probability")
    ]
    # Violations of an earlier row do not hide a later row's rest_mass error.
    assert _found(tmp_path, [[*row[:5], "zz", *row[6:]], [*row[:44], "0.5"]]) == [
        (1, "prob1", "expected float, found 'zz'"),
        (2, "rest_mass", "expected 1 - sum(probs) = 0.25, found 0.5"),
    ]


def test_rest_mass_tolerance_is_strictly_above_1e_9(tmp_path: Path) -> None:
    full = _cells(probs=("1.0", "0.0"))
    assert _found(tmp_path, [[*full[:44], "1e-09"]]) == []  # |0 - 1e-9| == 1e-9: accepted
    assert _found(tmp_path, [[*full[:44], "2e-09"]]) == [
        (1, "rest_mass", "expected 1 - sum(probs) = 0.0, found 2e-09")
    ]


def test_lenient_table_keeps_rows_with_unparsable_cells_as_zero(tmp_path: Path) -> None:
    from lenscheck.schema import read_csv

    path = _csv(tmp_path, [["x", *_cells()[1:]]])
    table = read_csv(path, strict=False)
    assert table.path == str(path)
    assert (table.kind, table.top_k_verbose) == ("records", 20)
    assert table.rows[0].layer == 0


def test_unreadable_and_unknown_headers_word_for_word(tmp_path: Path) -> None:
    from lenscheck.schema import CsvSchemaError, SchemaViolation, csv_header, read_csv

    records = ",".join(csv_header("records"))
    path = _csv(tmp_path, [], header="layer,pos,oops")
    with pytest.raises(CsvSchemaError) as info:
        read_csv(path)
    assert info.value.violations == [
        SchemaViolation(
            str(path),
            0,
            "*",
            f"unknown header 'layer,pos,oops'; expected {records!r} (+ flag columns for the "
            "pure CSV)",
        )
    ]
    path.write_text('"layer"x,pos\n', encoding="utf-8")
    with pytest.raises(CsvSchemaError) as info:
        read_csv(path)
    assert info.value.violations == [
        SchemaViolation(str(path), 0, "*", "unreadable CSV: ',' expected after '\"'")
    ]
    path.write_bytes(b"")
    with pytest.raises(CsvSchemaError) as info:
        read_csv(path)
    assert info.value.violations == [
        SchemaViolation(str(path), 0, "*", "empty file, expected a header")
    ]
    path.write_text(records + "\n" + ",".join(_cells()) + '\n0,0,"a"b\n', encoding="utf-8")
    table = read_csv(path, strict=False)
    assert len(table.rows) == 1
    assert table.violations == [
        SchemaViolation(str(path), 3, "*", "unreadable CSV: ',' expected after '\"'")
    ]


def test_csv_header_rejects_a_non_positive_k() -> None:
    from lenscheck.schema import csv_header

    with pytest.raises(ValueError) as info:
        csv_header("records", 0)
    assert str(info.value) == "top_k_verbose must be >= 1, got 0"


# ============================================================================ numerics


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([0.0, math.nan], "logits contains NaN; expected finite values or -inf for masked ids"),
        ([math.inf, 0.0], "logits contains +inf; expected finite values or -inf for masked ids"),
        (
            [-math.inf, -math.inf],
            "logits has a row where every value is -inf: no distribution to measure",
        ),
    ],
)
def test_non_finite_logits_messages(row: list[float], message: str) -> None:
    import torch

    from lenscheck.numerics import check_finite_logits

    with pytest.raises(ValueError) as info:
        check_finite_logits(torch.tensor(row))
    assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        check_finite_logits(torch.tensor([row]), "lens logits")
    assert str(info.value) == "lens " + message


# ============================================================================ collapse


def test_copy_rule_is_strict_at_threshold_and_margin() -> None:
    from lenscheck.collapse import collapse_flags

    def flag(p1: float, p2: float) -> bool:
        return collapse_flags(7, p1, p2, None, [7], copy_threshold=0.75, copy_margin=0.5)

    assert flag(0.875, 0.25) is True  # p1 > 0.75 and p1 - p2 = 0.625 > 0.5
    assert flag(0.75, 0.0) is False  # p1 == threshold: not above it
    assert flag(0.8125, 0.3125) is False  # p1 - p2 == margin exactly (dyadic): not above


# ================================================================================ norms


def test_transformers_norm_specs_are_exact() -> None:
    import torch
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from lenscheck.norms import NormSpec, norm_spec

    gemma = Gemma3RMSNorm(8, eps=1e-5)
    assert norm_spec(gemma) == NormSpec(
        "rmsnorm", gemma.weight, None, 1e-5, 1.0, False, "Gemma3RMSNorm"
    )
    llama = LlamaRMSNorm(8, eps=1e-6)
    assert norm_spec(llama) == NormSpec(
        "rmsnorm", llama.weight, None, 1e-6, 0.0, True, "LlamaRMSNorm"
    )
    layer = torch.nn.LayerNorm(8, eps=1e-3)
    assert norm_spec(layer) == NormSpec(
        "layernorm", layer.weight, layer.bias, 1e-3, 0.0, False, "LayerNorm"
    )
    rms = torch.nn.RMSNorm(8)
    assert norm_spec(rms) == NormSpec("rmsnorm", rms.weight, None, None, 0.0, False, "RMSNorm")


def _arch_model(orders: list[tuple[str, ...]], declared: str | None = None) -> Any:
    import torch

    blocks = []
    for order in orders:
        block = torch.nn.Module()
        for name in order:
            block.add_module(
                name, torch.nn.LayerNorm(4) if name.startswith("ln") else torch.nn.Linear(4, 4)
            )
        blocks.append(block)
    model = torch.nn.Module()
    model.blocks = torch.nn.ModuleList(blocks)
    if declared is not None:
        model.architecture = declared
    return model


def test_architecture_declared_wins_and_block_zero_decides() -> None:
    from lenscheck.norms import detect_model_architecture

    post = ("ln1", "attn", "mlp", "ln2")
    pre = ("ln1", "attn", "ln2", "mlp")
    assert detect_model_architecture(_arch_model([post])) == "post_norm"
    assert detect_model_architecture(_arch_model([post], declared="pre_norm")) == "pre_norm"
    assert detect_model_architecture(_arch_model([pre], declared="post_norm")) == "post_norm"
    assert detect_model_architecture(_arch_model([post, pre])) == "post_norm"
    assert detect_model_architecture(_arch_model([pre, post])) == "pre_norm"


def test_norm_choice_tolerates_absent_attributes() -> None:
    from types import SimpleNamespace

    from lenscheck.norms import get_correct_norm_module

    ln = object()
    pre = SimpleNamespace(architecture="pre_norm", blocks=[SimpleNamespace(ln1=ln)])
    assert get_correct_norm_module(pre, 1) is None  # no ln_final attribute at all
    assert get_correct_norm_module(pre, 0) is None
    post = SimpleNamespace(architecture="post_norm", blocks=[SimpleNamespace(ln1=ln)])
    assert get_correct_norm_module(post, 0) is None  # no ln2 attribute at all
    assert get_correct_norm_module(post, 0, probe_after_block=False) is ln


def test_collapse_default_allowance_is_zero_and_l_semantic_is_compared() -> None:
    observed = _observed()
    observed["collapse"]["L_copy"] = 2
    observed["collapse"]["L_semantic"] = 5
    report = compare_golden(_golden(), observed, TOL, sections=("collapse",))
    assert report.drifts == [
        Drift("collapse", "L_copy", 1, 2, 0),
        Drift("collapse", "L_semantic", 2, 5, 0),
    ]


def test_lens_result_tensors_and_residuals() -> None:
    import torch

    from lenscheck.lens import run_lens

    fb = make_fake_backend(n_layers=3)
    result = run_lens(fb, _lens_cfg())
    lens, _ = _expected_lens_logits(fb, result.input_ids)
    want_ent = torch.tensor([[_bits(row) for row in layer] for layer in lens])
    torch.testing.assert_close(result.entropies, want_ent.float(), rtol=0, atol=1e-4)
    assert torch.equal(result.top1_ids, torch.stack([layer.argmax(-1) for layer in lens]))
    assert result.residuals is None  # not kept unless asked
    kept = run_lens(fb, _lens_cfg(keep_residuals=True)).residuals
    assert kept is not None and len(kept) == 4
    for got, want in zip(kept, fb.forward(result.input_ids)[0]):
        assert torch.equal(got, want)


# ------------------------------------------------------------------ norms: apply_norm


def test_layernorm_spec_without_eps_adds_nothing() -> None:
    import torch

    from lenscheck.norms import NormSpec, apply_norm

    x = torch.tensor([[1e-3, -1e-3, 3e-3, -3e-3]])  # variance 5e-6: any eps would show
    centred = x - x.mean(-1, keepdim=True)
    want = centred / centred.pow(2).mean(-1, keepdim=True).sqrt()
    got = apply_norm(x, NormSpec("layernorm", None, None, None))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)


def test_rmsnorm_default_eps_in_float64_is_float64s() -> None:
    import torch

    from lenscheck.norms import apply_norm_or_skip

    norm = torch.nn.RMSNorm(4, eps=None, dtype=torch.float64)
    x = 1e-5 * torch.tensor([[1.0, -2.0, 3.0, 0.5]], dtype=torch.float64)  # mean(x^2) ~ 4e-10
    with torch.no_grad():
        want = norm(x)
    got = apply_norm_or_skip(x, norm)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)


def test_llama_norm_is_bit_exact_in_bfloat16_and_keeps_the_input_dtype() -> None:
    import torch
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from lenscheck.norms import apply_norm_or_skip

    gen = torch.Generator().manual_seed(5)
    norm = LlamaRMSNorm(64, eps=1e-6).to(torch.bfloat16)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.7 * torch.randn(64, generator=gen))
        x = (3 * torch.randn(16, 64, generator=gen)).to(torch.bfloat16)
        want = norm(x)
    got = apply_norm_or_skip(x, norm)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, want)  # the cast to bf16 happens before the scale, as Llama does
    fp32_weight = LlamaRMSNorm(64, eps=1e-6)  # fp32 weight, bf16 activations: dtype kept
    assert apply_norm_or_skip(x, fp32_weight).dtype == torch.bfloat16


def test_norm_refusal_messages_word_for_word() -> None:
    import torch

    from lenscheck.norms import UnsupportedNormError, apply_norm_or_skip

    with pytest.raises(UnsupportedNormError) as info:
        apply_norm_or_skip(torch.ones(2, 3, 4), torch.nn.LayerNorm((3, 4)))
    assert str(info.value) == (
        "norm module torch.nn.modules.normalization.LayerNorm normalizes over "
        "normalized_shape=(3, 4); the lens supports the last dimension only"
    )
    with pytest.raises(UnsupportedNormError) as info:
        apply_norm_or_skip(torch.ones(2, 4), torch.nn.Identity())
    assert str(info.value) == (
        "norm module torch.nn.modules.linear.Identity is not a norm class lenscheck knows; "
        "expected torch.nn.LayerNorm/RMSNorm, a transformers *RMSNorm (Llama-style or Gemma "
        "(1+w)), or a TransformerLens LayerNorm/RMSNorm. Refusing to guess its formula: add "
        "it to lenscheck.norms with a test that compares against the module's forward."
    )


# ----------------------------------------------------------------- norms: unwrap_norm


class FakeNormBridge:
    """Named like TransformerLens 4's bridges: ``original_component`` is the wrapped module."""

    def __init__(self, inner: Any = None) -> None:
        if inner is not None:
            self.original_component = inner


def _bridges(depth: int, core: Any) -> Any:
    module = core
    for _ in range(depth):
        module = FakeNormBridge(module)
    return module


def test_unwrap_norm_peels_up_to_eight_bridges() -> None:
    import torch

    from lenscheck.norms import unwrap_norm

    core = torch.nn.LayerNorm(4)
    assert unwrap_norm(core) is core
    assert unwrap_norm(_bridges(1, core)) is core
    assert unwrap_norm(_bridges(8, core)) is core
    ninth = _bridges(9, core)
    eighth_layer_down = ninth
    for _ in range(8):
        eighth_layer_down = eighth_layer_down.original_component
    assert isinstance(eighth_layer_down, FakeNormBridge)
    assert unwrap_norm(ninth) is eighth_layer_down  # the guard stops after eight
    empty = FakeNormBridge()  # a bridge with nothing inside is returned as it is
    assert unwrap_norm(empty) is empty
    assert unwrap_norm(FakeNormBridge(empty)) is empty
    loop = FakeNormBridge()
    loop.original_component = loop  # a cycle ends after eight steps instead of hanging
    assert unwrap_norm(loop) is loop
