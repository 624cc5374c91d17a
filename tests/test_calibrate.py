"""benchmarks/calibrate.py (issue 28): how it classifies, pairs and checks benign differences,
and the committed measurement against lenscheck's tolerances."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "calibration-full.json"
METRIC_DATA = ROOT / "benchmarks" / "calibration-metrics.json"


def _module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "lenscheck_calibrate", ROOT / "benchmarks" / "calibrate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cal = _module()


def _doc() -> dict[str, Any]:
    """A golden document's shape, one prompt, two layers (values as the payload holds)."""
    rows = {"top1": ["a", "b"], "p_top1": [0.5, 0.9], "p_top2": [0.2, 0.05], "entropy": [2.0, 0.5]}
    decoding = {
        point: {**copy.deepcopy(rows), "p_answer": [0.1, 0.8], "answer_rank": [40, 1]}
        for point in ("next-ln1", "final", "raw")
    }
    return {
        "class": "cpu-float32",
        "decode_norm": "final",
        "prompts": {
            "p": {
                "next_token": {"layer": [0, 1], **copy.deepcopy(rows)},
                "probes": {
                    "prompt": ["x"],
                    "top1": ["c"],
                    "p_top1": [0.3],
                    "p_top2": [0.1],
                    "entropy": [3.0],
                },
                "final_prediction": {"entropy": 1.0, "top5": [["a", 0.6], ["b", 0.1]]},
                "decoding": decoding,
            }
        },
    }


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("next_token", "entropy", 1), ("entropy", "lens (final)")),
        (("records", "p_top1", 3, 4), ("probability", "lens (final)")),
        (("decoding", "raw", "entropy", 0), ("entropy", "raw")),
        (("decoding", "next-ln1", "answer_rank", 2), ("rank_rel", "next-ln1")),
        (("probes", "p_top1", 0), ("probability", "model")),
        (("final_prediction", "top5", 0, 1), ("final_prob", "model")),
        (("tokenization", "other_bos", "final_p_top1"), ("probability", "model")),
        (("next_token", "layer", 1), None),
        (("collapse", "L_copy"), None),
        # The metrics section: each declaration's tolerance class, at raw where it reads
        # the raw lens.
        (("metrics", "next_token", "entropy_bits", 3), ("m:entropy", "lens (final)")),
        (("metrics", "next_token", "kl_to_final_bits", 0), ("m:divergence", "lens (final)")),
        (("metrics", "next_token", "answer_logit_gap", 0), ("m:logit", "lens (final)")),
        (("metrics", "next_token", "topk_jaccard_raw_norm@50", 0), ("m:set", "raw")),
        (("metrics", "next_token", "topk_jaccard_consecutive@50", 1), ("m:set", "lens (final)")),
        (("metrics", "rawlens", "entropy_bits_raw", 2), ("m:entropy", "raw")),
        (("metrics", "rawlens", "entropy_bits_norm", 2), ("m:entropy", "lens (final)")),
        (("metrics", "rawlens", "p_answer_raw", 2), ("m:prob", "raw")),
        (("metrics", "rawlens", "answer_rank_norm", 2), ("m:rank", "lens (final)")),
        (("metrics", "rawlens", "top1_token_id_raw", 2), ("m:exact", "raw")),
        (("metrics", "rawlens", "layer", 2), None),
        (("metrics", "milestones", "first_rank_le_5"), ("m:exact", "lens (final)")),
        (("metrics", "raw_lens_summary", "max_kl_norm_vs_raw_bits"), ("m:divergence", "raw")),
        (("metrics", "raw_lens_summary", "mean_topk_jaccard_raw_norm"), ("m:set", "raw")),
        (("metrics", "next_token", "undeclared"), None),
    ],
)
def test_every_compared_number_has_its_class_and_point(path: Any, expected: Any) -> None:
    assert cal.classify(path, "final") == expected


GOLDEN = ROOT / "golden" / "synthetic-llama" / "cpu-float32.json"


@settings(max_examples=20, deadline=None)
@given(delta=st.floats(1e-9, 1e-2), layer=st.integers(0, 3))
def test_pairing_reports_exactly_the_largest_difference(delta: float, layer: int) -> None:
    """Property: one moved value of a committed golden shows as its class and point's
    largest difference, every other class and point as 0, and it alarms exactly when it is
    beyond its tolerance."""
    from lenscheck.golden.tolerances import DEFAULT_TOLERANCES

    base = json.loads(GOLDEN.read_text(encoding="utf-8"))
    run = copy.deepcopy(base)
    (entry,) = run["prompts"].values()
    entry["decoding"]["raw"]["entropy"][layer] += delta
    got = cal._pairing(base, (run, 0.0), "m", "s", cal.Change("eager"))
    moved = got.deltas[("entropy", "raw")]
    assert moved == pytest.approx(delta, rel=1e-5, abs=1e-9)
    assert all(v == 0 for k, v in got.deltas.items() if k != ("entropy", "raw"))
    assert got.top1_changes == 0
    raw = DEFAULT_TOLERANCES["cpu-float32"].for_point("raw").entropy
    assert bool(got.alarms) == (moved > raw)


def test_a_changed_top1_is_recorded_with_its_golden_gap() -> None:
    base, run = _doc(), _doc()
    run["prompts"]["p"]["decoding"]["next-ln1"]["top1"][0] = "z"
    pairing = cal.Pairing("m", "s", "threads-2")
    cal.pair(base, run, pairing)
    assert pairing.top1_changes == 1
    assert pairing.deltas[("top1_gap", "next-ln1")] == pytest.approx(0.5 - 0.2)


def test_a_margin_under_5x_and_an_alarm_fail_the_calibration(tmp_path: Path) -> None:
    from lenscheck.golden.tolerances import DEFAULT_TOLERANCES

    tol = DEFAULT_TOLERANCES["cpu-float32"]
    ok = cal.Pairing("m", "s", "eager")
    ok.deltas[("entropy", "lens (final)")] = tol.entropy / 10
    assert cal.problems([ok], cal.margins([ok], 0.0)) == []
    close = cal.Pairing("m", "s", "eager")
    close.deltas[("entropy", "raw")] = tol.raw_entropy / 4
    (line,) = cal.problems([close], cal.margins([close], 0.0))
    assert line.startswith("entropy at raw: tolerance 0.0015 is 4x the largest benign")
    # A saved measurement is re-checked against the current tolerances when read back.
    path = tmp_path / "m.json"
    over = cal.Pairing("m", "s", "eager")
    over.deltas[("probability", "model")] = tol.p_top1 * 2
    cal.save(path, [over], 1e-7)
    (loaded,), kl = cal.load(path)
    assert kl == 1e-7 and loaded.deltas == over.deltas
    assert loaded.alarms == ["probability at model: 0.0003 > tolerance 0.00015"]


def test_the_committed_measurement_passes_with_the_current_tolerances() -> None:
    """The data docs/tolerances.md shows: no alarm, every margin >= 5x, suites alone 0."""
    pairings, kl_max = cal.load(DATA)
    assert len(pairings) == 54
    assert cal.problems(pairings, cal.margins(pairings, kl_max)) == []
    alone = [p for p in pairings if p.change == "alone"]
    assert alone and all(v == 0 for p in alone for v in p.deltas.values())
    doc = (ROOT / "docs" / "tolerances.md").read_text(encoding="utf-8")
    assert cal.markdown(pairings, kl_max, "x").split("\n", 1)[1] in doc


def test_a_large_divergence_is_measured_relative_to_its_value() -> None:
    """A KL beyond the point where divergence_rel x value exceeds the entropy tolerance
    is measured as |difference| / value (class m:divergence_rel), a small one in bits."""
    base, run = _doc(), _doc()
    kl = {"kl_raw_to_norm_bits": [800.0, 0.5]}
    base["prompts"]["p"]["metrics"] = {"next_token": {}, "rawlens": kl}
    run["prompts"]["p"]["metrics"] = {
        "next_token": {},
        "rawlens": {"kl_raw_to_norm_bits": [800.0008, 0.5001]},
    }
    pairing = cal.Pairing("m", "s", "eager")
    cal.pair(base, run, pairing)
    assert pairing.deltas[("m:divergence_rel", "raw")] == pytest.approx(1e-6, rel=1e-3)
    assert pairing.deltas[("m:divergence", "raw")] == pytest.approx(1e-4, rel=1e-3)


def test_the_committed_metric_measurement_passes_with_the_current_tolerances() -> None:
    """The extended measurements' data docs/tolerances.md shows: no alarm, every margin
    >= 5x, every raw-lens class measured."""
    pairings, kl_max = cal.load(METRIC_DATA)
    pairings = [cal.only_metrics(p) for p in pairings]
    assert cal.problems(pairings, cal.margins(pairings, kl_max)) == []
    measured = {key for p in pairings for key in p.deltas}
    assert {("m:entropy", "raw"), ("m:prob", "raw"), ("m:set", "raw")} <= measured
    assert {("m:logit", "lens (final)"), ("m:exact", "lens (final)")} <= measured
    doc = (ROOT / "docs" / "tolerances.md").read_text(encoding="utf-8")
    assert cal.markdown(pairings, kl_max, "x").split("\n", 1)[1] in doc


def test_splice_rewrites_only_its_part(tmp_path: Path) -> None:
    path = tmp_path / "doc.md"
    path.write_text("head\n<!-- a:begin -->\nold\n<!-- a:end -->\ntail\n", encoding="utf-8")
    cal.splice(path, "a", "new\n")
    assert path.read_text(encoding="utf-8") == "head\n<!-- a:begin -->\nnew\n<!-- a:end -->\ntail\n"
    with pytest.raises(SystemExit, match="expected the markers <!-- b:begin -->"):
        cal.splice(path, "b", "x")
