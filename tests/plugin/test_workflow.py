"""The golden workflow a researcher follows, end to end, on one synthetic model."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from _plugin_helpers import GENERATED, LensProject, failed_models, snapshot_summary

from lenscheck.golden.store import read_golden

MODEL = "synthetic-llama"
RUN = (f"--lens-models={MODEL}",)
REBLESS = f"pytest --lens-models={MODEL} --snapshot-update"


def test_create_check_rebless(lens_project: LensProject) -> None:
    path = lens_project.golden(MODEL)

    # 1. No golden yet: every golden test fails and says how to create one.
    missing = lens_project.run(*RUN)
    assert failed_models(missing) == {MODEL: set(GENERATED) - {"test_invariants"}}
    out = missing.stdout.str()
    assert f"no golden for {MODEL} (cpu-float32) in {path.parent}; create it with: {REBLESS}" in out
    assert not path.exists()

    # 2. --snapshot-update creates it.
    created = lens_project.run(*RUN, "--snapshot-update")
    created.assert_outcomes(passed=len(GENERATED))
    assert snapshot_summary(created) == "1 snapshot generated."
    first = path.read_bytes()
    assert read_golden(path, model=MODEL)["format_version"] == 1

    # 3. A plain rerun passes against it, and leaves it alone.
    rerun = lens_project.run(*RUN)
    rerun.assert_outcomes(passed=len(GENERATED))
    assert snapshot_summary(rerun) == "1 snapshot passed."
    assert path.read_bytes() == first

    # 4. A golden from an old lenscheck: clear failure, then --snapshot-update fixes it.
    lens_project.edit_golden(MODEL, lambda d: d.update(format_version=0))
    old = lens_project.run(*RUN)
    assert failed_models(old) == {MODEL: set(GENERATED) - {"test_invariants"}}
    assert f"regenerate with: {REBLESS}" in old.stdout.str()
    reblessed = lens_project.run(*RUN, "--snapshot-update")
    reblessed.assert_outcomes(passed=len(GENERATED))
    assert snapshot_summary(reblessed) == "1 snapshot updated."
    assert path.read_bytes() == first  # the same run writes the same bytes
    lens_project.run(*RUN).assert_outcomes(passed=len(GENERATED))


Edit = Callable[[dict[str, Any]], None]


def _entropy(delta: float) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data["trajectory"][2]["entropy"] += delta

    return edit


def _stats(data: dict[str, Any]) -> None:
    data["model_stats"]["num_layers"] = 5
    data["model_stats"]["d_vocab"] = 32000


def _version(version: int) -> Edit:
    return lambda data: data.update(format_version=version)


#: (hand edit, generated tests that must fail, texts the failure output must contain)
CASES: dict[str, tuple[Edit, set[str], list[str]]] = {
    "entropy-beyond-tolerance": (
        _entropy(0.5),
        {"test_trajectory", "test_golden_file"},
        [
            "1 drift(s) (trajectory 1); first: trajectory: layer 2 entropy: ",
            "|Δ| 0.5 > tol 0.0001",
            "max |Δ| 0.5 (entropy, layer 2)",
            f"if this change is intended, re-bless: {REBLESS}",
        ],
    ),
    "entropy-within-tolerance": (_entropy(1e-6), set(), []),
    "newer-format": (
        _version(99),
        set(GENERATED) - {"test_invariants"},
        [
            "has format 99, newer than this lenscheck reads (1); upgrade lenscheck",
            f"or regenerate with: {REBLESS}",
        ],
    ),
    "other-model-shape": (
        _stats,
        {"test_schema", "test_golden_file"},
        [
            "2 drift(s) (model_stats 2)",
            "model_stats: num_layers: golden 5 vs run 3",
            "model_stats: d_vocab: golden 32000 vs run 49152",
        ],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_hand_edited_golden(lens_project: LensProject, case: str) -> None:
    edit, failing, texts = CASES[case]
    lens_project.copy_golden(MODEL)
    path = lens_project.edit_golden(MODEL, edit)
    result = lens_project.run(*RUN)
    assert failed_models(result) == ({MODEL: failing} if failing else {})
    out = result.stdout.str()
    for text in texts:
        assert text in out, f"{text!r} not in the output:\n{out}"
    if failing:
        assert str(path) in out  # every failure names the golden file
        # Each failure is printed once, not chained to the parsing error.
        assert "During handling of the above exception" not in out
    else:
        result.assert_outcomes(passed=len(GENERATED))


def test_corrupted_golden_names_the_file(lens_project: LensProject) -> None:
    path = lens_project.copy_golden(MODEL)[MODEL]
    path.write_text(path.read_text(encoding="utf-8")[:200], encoding="utf-8")  # cut short
    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_text(encoding="utf-8"))
    result = lens_project.run(*RUN)
    assert failed_models(result) == {MODEL: set(GENERATED) - {"test_invariants"}}
    out = result.stdout.str()
    assert f"golden file {path} is not valid JSON (" in out
    assert f"regenerate with: {REBLESS}" in out
    # Once per failed test in the failure sections (the short summary may repeat each line,
    # untruncated when CI is set, so it is left out of the count).
    failures = out.split("short test summary info")[0]
    assert failures.count(f"golden file {path} is not valid JSON") == 5
    assert "During handling of the above exception" not in out
