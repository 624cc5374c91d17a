"""The golden workflow a researcher follows, end to end, on one synthetic model: create,
check, drift (one failure per drift, an obtained file and the diff command), re-bless."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from _plugin_helpers import GENERATED, LensProject, failed_models, snapshot_summary

from lenscheck.golden.payload import FORMAT_VERSION
from lenscheck.golden.store import read_golden

MODEL = "synthetic-llama"
RUN = (f"--lens-models={MODEL}",)
REBLESS = f"pytest --lens-models={MODEL} --snapshot-update"
PID = "capital-de"


def test_create_check_rebless(lens_project: LensProject) -> None:
    path = lens_project.golden(MODEL)

    # 1. No golden yet: one test fails and says how to create one; the others skip.
    missing = lens_project.run(*RUN)
    assert failed_models(missing) == {MODEL: {"test_golden_file"}}
    # test_invariants, test_rules and test_measurements need no golden.
    missing.assert_outcomes(passed=3, failed=1, skipped=len(GENERATED) - 4)
    out = missing.stdout.str()
    assert (
        f"no golden for {MODEL} (cpu-float32, suite default, "
        "decode_norm=final bos=auto schema=extended chat_template=False lens=logit) in "
        f"{path.parent}; "
        f"create it with: {REBLESS}"
    ) in out
    assert not path.exists()

    # 2. --snapshot-update creates it.
    created = lens_project.run(*RUN, "--snapshot-update")
    created.assert_outcomes(passed=len(GENERATED))
    assert snapshot_summary(created) == "1 snapshot generated."
    first = path.read_bytes()
    assert read_golden(path)["format_version"] == FORMAT_VERSION

    # 3. A plain rerun passes against it, and leaves it alone.
    rerun = lens_project.run(*RUN)
    rerun.assert_outcomes(passed=len(GENERATED))
    assert snapshot_summary(rerun) == "1 snapshot passed."
    assert path.read_bytes() == first

    # 4. A golden from an old lenscheck: one clear failure, then --snapshot-update fixes it.
    lens_project.edit_golden(MODEL, lambda d: d.update(format_version=1))
    old = lens_project.run(*RUN)
    assert failed_models(old) == {MODEL: {"test_golden_file"}}
    assert "has format 1, older than the current 4" in old.stdout.str()
    assert f"re-bless it with: {REBLESS}" in old.stdout.str()
    reblessed = lens_project.run(*RUN, "--snapshot-update")
    reblessed.assert_outcomes(passed=len(GENERATED))
    assert snapshot_summary(reblessed) == "1 snapshot updated."
    assert path.read_bytes() == first  # the same run writes the same bytes
    lens_project.run(*RUN).assert_outcomes(passed=len(GENERATED))


Edit = Callable[[dict[str, Any]], None]


def _at(section: str, metric: str, index: int | tuple[int, int], delta: float) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        values = data["prompts"][PID][section][metric]
        if isinstance(index, tuple):
            values[index[0]][index[1]] += delta
        else:
            values[index] += delta

    return edit


def _final_point_entropy(data: dict[str, Any]) -> None:
    data["prompts"][PID]["decoding"]["final"]["entropy"][1] = 9.0


def _metric(part: str, column: str, layer: int, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data["prompts"][PID]["metrics"][part][column][layer] = value

    return edit


def _milestone(data: dict[str, Any]) -> None:
    data["prompts"][PID]["metrics"]["milestones"]["first_kl_below_1.0"] = 0


def _stats(data: dict[str, Any]) -> None:
    data["model_stats"]["num_layers"] = 5
    data["model_stats"]["d_vocab"] = 32000


def _changed_answer(data: dict[str, Any]) -> None:
    data["prompts"][PID]["answer"] = "Paris"
    data["prompts"][PID]["sha256"] = "0" * 64


def _renamed_prompt(data: dict[str, Any]) -> None:
    data["prompts"]["old-name"] = data["prompts"].pop(PID)
    data["prompts"]["old-name"]["sha256"] = "1" * 64


#: (hand edit, the one generated test that must fail, texts the failure output must contain)
CASES: dict[str, tuple[Edit, set[str], list[str]]] = {
    "entropy-beyond-tolerance": (
        _at("next_token", "entropy", 2, 0.5),
        {"test_trajectory"},
        [
            f"1 drift(s); first: trajectory: prompt {PID} layer 2 entropy: ",
            "|Δ| 0.5 > tol 0.0004",
            f"trajectory: 1 of 40 values drifted, max |Δ| 0.5 (entropy, prompt {PID} layer 2)",
            f"if this change is intended, re-bless: {REBLESS}",
        ],
    ),
    "records-cell": (
        _at("records", "p_top1", (1, 6), -0.25),
        {"test_records"},
        [f"records: 1 of 756 values drifted, max |Δ| 0.25 (p_top1, prompt {PID} layer 1 pos 6)"],
    ),
    "probe": (
        _at("probes", "entropy", 4, 0.5),
        {"test_probes"},
        ["probes: 1 of 42 values drifted", "probe 'In Germany the capital city is simply' entropy"],
    ),
    "temperature": (
        _at("temperature", "entropy", 0, 0.5),
        {"test_final_prediction"},
        [f"final_prediction: prompt {PID} T=0.1 entropy: "],
    ),
    "decoding": (
        _final_point_entropy,
        {"test_decoding"},
        [f"decoding: prompt {PID} layer 1 final entropy: golden 9 vs run "],
    ),
    # Issue 24: the extended schema's measurements, each by its tolerance class.
    "metrics-kl": (
        _metric("next_token", "kl_to_final_bits", 1, 42.0),
        {"test_metrics"},
        [f"metrics: prompt {PID} layer 1 next_token kl_to_final_bits: golden 42 vs run "],
    ),
    "metrics-rawlens-id": (
        _metric("rawlens", "top1_token_id_raw", 0, 7),
        {"test_metrics"},
        [f"metrics: prompt {PID} layer 0 rawlens top1_token_id_raw: golden 7 vs run "],
    ),
    "metrics-milestone": (
        _milestone,
        {"test_metrics"},
        [f"metrics: prompt {PID} milestones first_kl_below_1.0: golden 0 vs run 3"],
    ),
    "records-topk-probability": (
        lambda data: data["prompts"][PID]["records"]["topk"][2][5][3].__setitem__(1, 0.5),
        {"test_records"},
        [f"records: prompt {PID} layer 2 pos 5 p(top4 "],
    ),
    "entropy-within-tolerance": (_at("next_token", "entropy", 2, 1e-6), set(), []),
    "newer-format": (
        lambda data: data.update(format_version=99),
        {"test_golden_file"},
        [
            "has format 99, newer than this lenscheck reads (4); upgrade lenscheck",
            f"or re-bless it with: {REBLESS}",
        ],
    ),
    "other-model-shape": (
        _stats,
        {"test_schema"},
        [
            "schema: 2 of ",
            "schema: model_stats num_layers: golden 5 vs run 3",
            "schema: model_stats d_vocab: golden 32000 vs run 49152",
        ],
    ),
    "changed-answer": (
        _changed_answer,
        {"test_golden_file"},
        [
            f"prompt '{PID}' changed: answer differs from the golden's; its values are not "
            "compared, re-bless with --snapshot-update",
            "answer golden: 'Paris'\n",  # the golden's text, then the run's
            "answer run:    'Berlin'\n",
            f"re-bless: {REBLESS}",
        ],
    ),
    "prompt-without-entry": (
        _renamed_prompt,
        {"test_golden_file"},
        [f"prompt '{PID}' has no golden entry", f"re-bless: {REBLESS}"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_hand_edited_golden_fails_exactly_one_test(lens_project: LensProject, case: str) -> None:
    edit, failing, texts = CASES[case]
    lens_project.copy_golden(MODEL)
    path = lens_project.edit_golden(MODEL, edit)
    result = lens_project.run(*RUN)
    assert failed_models(result) == ({MODEL: failing} if failing else {})
    out = result.stdout.str()
    for text in texts:
        assert text in out, f"{text!r} not in the output:\n{out}"
    obtained = path.with_name("cpu-float32.obtained.json")
    if failing:
        assert str(path) in out  # every failure names the golden file
        assert "During handling of the above exception" not in out
    else:
        result.assert_outcomes(passed=len(GENERATED))
    drifted = failing - {"test_golden_file"}
    assert obtained.exists() is bool(drifted)
    if drifted:
        # What the run produced, beside the golden, and the command that compares them.
        assert (
            read_golden(obtained)["prompts"][PID]["sha256"]
            == read_golden(path)["prompts"][PID]["sha256"]
        )
        assert f"compare them: lenscheck diff {path} {obtained}" in out


def test_an_obtained_file_goes_when_the_run_passes_again(lens_project: LensProject) -> None:
    path = lens_project.copy_golden(MODEL)[MODEL]
    original = path.read_bytes()
    lens_project.edit_golden(MODEL, _at("next_token", "entropy", 0, 0.5))
    lens_project.run(*RUN)
    obtained = path.with_name("cpu-float32.obtained.json")
    assert obtained.exists()
    path.write_bytes(original)
    lens_project.run(*RUN).assert_outcomes(passed=len(GENERATED))
    assert not obtained.exists()


def test_a_removed_prompt_is_reported_not_failed(lens_project: LensProject) -> None:
    def extra(data: dict[str, Any]) -> None:
        data["prompts"]["retired"] = dict(data["prompts"][PID], sha256="2" * 64)

    lens_project.copy_golden(MODEL)
    path = lens_project.edit_golden(MODEL, extra)
    result = lens_project.run(*RUN)
    result.assert_outcomes(passed=len(GENERATED))
    result.stdout.fnmatch_lines(
        [
            "*= lenscheck =*",
            f"{MODEL}: {path} has prompt(s) retired that this suite does not run (re-bless "
            "with --snapshot-update to drop them)",
        ]
    )


def test_corrupted_golden_fails_once_naming_the_file(lens_project: LensProject) -> None:
    path = lens_project.copy_golden(MODEL)[MODEL]
    path.write_text(path.read_text(encoding="utf-8")[:200], encoding="utf-8")  # cut short
    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_text(encoding="utf-8"))
    result = lens_project.run(*RUN)
    assert failed_models(result) == {MODEL: {"test_golden_file"}}
    # test_invariants, test_rules and test_measurements need no golden.
    result.assert_outcomes(passed=3, failed=1, skipped=len(GENERATED) - 4)
    out = result.stdout.str()
    assert f"golden file {path} is not valid JSON (" in out
    assert f"re-bless it with: {REBLESS}" in out
    failures = out.split("short test summary info")[0]
    assert failures.count(f"golden file {path} is not valid JSON") == 1
    assert "During handling of the above exception" not in out
