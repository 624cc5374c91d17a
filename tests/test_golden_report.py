"""lenscheck.golden.report: what a drift report says, how long it gets, how it re-blesses.

Reports of edited copies of the committed synthetic-llama golden (``golden``/``run``).
"""

from __future__ import annotations

from typing import Any

import pytest

from lenscheck.golden.compare import Drift, DriftReport, compare_golden
from lenscheck.golden.report import (
    identity_problems,
    rebless_command,
    render_markdown,
    render_report,
    section_summaries,
)
from lenscheck.golden.tolerances import DEFAULT_TOLERANCES

# Their expectations decide the golden comparison too: `nox -s mutation` runs them on it.
pytestmark = pytest.mark.covers("lenscheck.golden.compare")

FP32 = DEFAULT_TOLERANCES["cpu-float32"]
PID = "capital-de"
PATH = "golden/synthetic-llama/cpu-float32.json"


def entry(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["prompts"][PID]  # type: ignore[no-any-return]


def test_rebless_command_names_every_option_that_chose_the_golden() -> None:
    assert rebless_command("org/m") == "pytest --lens-models=org/m --snapshot-update"
    flags = ["--lens-dtype=bfloat16", "--lens-prompts=suites/capitals.toml"]
    assert rebless_command("embedded", flags) == (
        "pytest --lens-models=embedded --lens-dtype=bfloat16 "
        "--lens-prompts=suites/capitals.toml --snapshot-update"
    )
    # Values a shell would split are quoted, so the printed command runs as it reads.
    assert rebless_command("mine=/data/my model", ["--lens-prompts=my suite.toml"]) == (
        "pytest '--lens-models=mine=/data/my model' '--lens-prompts=my suite.toml' "
        "--snapshot-update"
    )


def test_report_names_prompt_layer_position_metric_and_counts(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    entry(run)["records"]["entropy"][2][5] += 0.5
    entry(run)["next_token"]["entropy"][3] += 0.25
    report = compare_golden(golden, run, FP32, tolerance_note="cpu-float32 tolerances")
    text = render_report(report, golden_path=PATH, rebless=rebless_command("synthetic-llama"))
    lines = text.splitlines()
    assert lines[0] == (  # the golden (the old side) first, as in every line below
        f"lenscheck drift: synthetic-llama, suite default: golden cpu-float32 ({PATH}) vs run "
        "cpu-float32"
    )
    assert lines[1] == "  compared with cpu-float32 tolerances"
    assert lines[2].startswith("  2 drift(s); first: records: prompt capital-de layer 2 pos 5 ")
    assert lines[2].endswith("|Δ| 0.5 > tol 0.0004")
    assert lines[3] == (
        "  trajectory: 1 of 40 values drifted, max |Δ| 0.25 (entropy, prompt capital-de "
        "layer 3); first: prompt capital-de layer 3 entropy"
    )
    assert lines[4] == (
        "  records: 1 of 756 values drifted, max |Δ| 0.5 (entropy, prompt capital-de "
        "layer 2 pos 5); first: prompt capital-de layer 2 pos 5 entropy"
    )
    assert "  next-token rows of prompt capital-de:" in lines
    assert any(line.startswith("  >> 3 ") for line in lines)  # the marked row
    assert lines[-1] == (
        "  if this change is intended, re-bless: "
        "pytest --lens-models=synthetic-llama --snapshot-update"
    )


def test_sections_limit_the_report(golden: dict[str, Any], run: dict[str, Any]) -> None:
    entry(run)["records"]["entropy"][2][5] += 0.5
    entry(run)["collapse"]["L_copy"] = 99
    report = compare_golden(golden, run, FP32)
    text = render_report(report, sections=("collapse",))
    assert "collapse: 1 of 22 values drifted" in text  # 4 layers, 12 flags, 6 echo values
    assert "records" not in text
    assert render_report(report, sections=("probes",)).splitlines()[2] == (
        "  no drift beyond tolerance"
    )


def test_report_is_bounded(golden: dict[str, Any], run: dict[str, Any]) -> None:
    """Hundreds of drifts: 12 listed, then "... and N more"; 7 table rows at most."""
    cells = entry(run)["records"]
    for layer in range(4):
        cells["entropy"][layer] = [e + 1 for e in cells["entropy"][layer]]
        cells["p_top1"][layer] = [p + 0.5 for p in cells["p_top1"][layer]]
    report = compare_golden(golden, run, FP32)
    assert len(report.drifts) == 4 * 16 * 2
    lines = render_report(report).splitlines()
    assert "  ... and 116 more (every one: --lens-details, ini lens_details = true)" in lines
    assert sum(line.startswith("  records: prompt") for line in lines) == 12
    assert "  records: 128 of 756 values drifted" in "\n".join(lines)
    assert len(lines) < 40


def test_report_caps_near_ties_and_long_values(golden: dict[str, Any], run: dict[str, Any]) -> None:
    g, o = entry(golden)["records"], entry(run)["records"]
    for layer in range(4):
        g["p_top1"][layer] = [0.3] * 16
        g["p_top2"][layer] = [0.3] * 16
        o["p_top1"][layer] = [0.3] * 16
        o["top1"][layer] = ["x" * 500] * 16
    text = render_report(compare_golden(golden, run, FP32))
    assert text.count("near-tie (not a failure)") == 12
    assert "x" * 100 not in text
    assert len(text) < 6000


def test_identity_problems_are_listed_before_drift(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    entry(run)["prompt"] = "Another prompt"
    entry(run)["sha256"] = "0" * 64
    run["prompts"]["extra"] = dict(entry(golden), sha256="1" * 64)
    golden["prompts"]["gone"] = dict(entry(golden), sha256="2" * 64)
    report = compare_golden(golden, run, FP32)
    assert identity_problems(report) == [
        "prompt 'capital-de' changed: prompt differs from the golden's; its values are not "
        "compared, re-bless with --snapshot-update",
        "    prompt golden: 'Give the city name only, plain text. The capital of Germany is "
        "called simply'",
        "    prompt run:    'Another prompt'",
        "prompt 'extra' has no golden entry",
    ]
    text = render_report(report)
    assert "  not in this run (the golden has them): gone" in text
    assert "\n      prompt run:    'Another prompt'\n" in text
    # Without a golden to re-bless (lenscheck diff) the report does not advise it...
    assert (
        "  prompt 'capital-de' changed: prompt differs from the golden's; its values are not "
        "compared\n" in text
    )
    assert "--snapshot-update" not in text
    # ...with one (the plugin) it does.
    blessed = render_report(report, rebless=rebless_command("synthetic-llama"))
    assert "its values are not compared, re-bless with --snapshot-update\n" in blessed


def test_a_changed_prompt_shows_what_changed_on_both_sides(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    """Which of prompt, answer and probes changed, each with the golden's and the run's text
    (the old side first); long texts cut around their first difference."""
    long_prompt = "A long preamble that says nothing at all, " * 3 + "then the capital of Germany"
    entry(golden)["prompt"] = long_prompt
    entry(run)["prompt"] = long_prompt.replace("Germany", "France")
    entry(run)["answer"] = "Paris"
    entry(run)["probes"]["prompt"][2] = "A new third probe"
    entry(run)["sha256"] = "0" * 64
    report = compare_golden(golden, run, FP32)
    cut = long_prompt.index("Germany") - 32  # a third of the 96-character window before it
    assert identity_problems(report, "OLD", "NEW") == [
        "prompt 'capital-de' changed: prompt, answer and probe #3 differ from the OLD's; its "
        "values are not compared, re-bless with --snapshot-update",
        f"    prompt OLD:   …{long_prompt[cut:]!r}",
        f"    prompt NEW:   …{long_prompt.replace('Germany', 'France')[cut:]!r}",
        "    answer OLD:   'Berlin'",
        "    answer NEW:   'Paris'",
        "    probe #3 OLD: 'The capital city of Germany is named simply'",
        "    probe #3 NEW: 'A new third probe'",
    ]
    # A probe list that only grew, and a hash that changed with nothing else.
    entry(run)["prompt"], entry(run)["answer"] = long_prompt, "Berlin"
    entry(run)["probes"]["prompt"] = [*entry(golden)["probes"]["prompt"], "One more"]
    assert identity_problems(compare_golden(golden, run, FP32))[1:] == [
        "    probes golden: 14 probes",
        "    probes run:    15 probes",
    ]
    entry(run)["probes"]["prompt"] = entry(golden)["probes"]["prompt"]
    assert identity_problems(compare_golden(golden, run, FP32)) == [
        "prompt 'capital-de' changed: its hash differs from the golden's (prompt, answer and "
        "probes read the same); its values are not compared, re-bless with --snapshot-update"
    ]


def test_a_long_text_is_cut_at_both_ends() -> None:
    from lenscheck.golden.report import _excerpts

    a, b = "x" * 200 + "A" + "y" * 200, "x" * 200 + "B" + "y" * 200
    assert _excerpts(a, b) == (
        "…" + repr("x" * 32 + "A" + "y" * 63) + "…",
        "…" + repr("x" * 32 + "B" + "y" * 63) + "…",
    )
    assert _excerpts("short", "shirt") == ("'short'", "'shirt'")
    early = ("A" + "x" * 150, "B" + "x" * 150)
    assert _excerpts(*early) == (repr("A" + "x" * 95) + "…", repr("B" + "x" * 95) + "…")


def test_diff_and_plugin_titles_read_old_then_new(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    golden["class"], run["class"] = "cpu-float32", "cuda-bfloat16"
    before = entry(golden)["records"]["entropy"][0][0]
    entry(run)["records"]["entropy"][0][0] += 1.0
    report = compare_golden(golden, run, FP32)
    plugin = render_report(report, golden_path=PATH).splitlines()[0]
    diff = render_report(report, old="OLD", new="NEW").splitlines()[0]
    assert plugin == (
        f"lenscheck drift: synthetic-llama, suite default: golden cpu-float32 ({PATH}) vs run "
        "cuda-bfloat16"
    )
    assert (
        diff
        == "lenscheck drift: synthetic-llama, suite default: OLD cpu-float32 vs NEW cuda-bfloat16"
    )
    body = render_report(report, old="OLD", new="NEW")
    assert body.index("versions OLD") < body.index("versions NEW")
    assert f"entropy: OLD {before:.6g} vs NEW {before + 1.0:.6g}" in body


def test_section_summaries_without_numbers() -> None:
    report = DriftReport("m", "a", "b", "", drifts=[Drift("collapse", "L_copy", None, 3)])
    report.compared["collapse"] = 16
    assert section_summaries(report) == ["collapse: 1 of 16 values drifted; first: L_copy"]


def test_markdown_summary(golden: dict[str, Any], run: dict[str, Any]) -> None:
    ok = compare_golden(golden, golden, FP32, tolerance_note="same")
    entry(run)["probes"]["top1"][0] = "a|b"
    entry(golden)["probes"]["p_top2"][0] = 0.0
    drifted = compare_golden(golden, run, FP32, tolerance_note="cpu-float32 tolerances")
    text = render_markdown([ok, drifted])
    lines = text.splitlines()
    assert lines[0] == "## lenscheck drift report"
    assert lines[2] == "| model | classes | result | drifted values | first divergence |"
    assert lines[4] == "| synthetic-llama | cpu-float32 → cpu-float32 | ok | 0 |  |"
    assert lines[5].startswith("| synthetic-llama | cpu-float32 → cpu-float32 | **drift** | 1 |")
    assert "### synthetic-llama" in lines
    assert any("'a\\|b'" in line for line in lines)  # a | inside a cell is escaped
    assert text.endswith("\n")


def test_a_half_precision_run_failing_a_float32_golden_says_why_and_how_to_pin_it() -> None:
    from lenscheck.plugin.session import _cross_dtype_note

    cmd = "pytest --lens-models=m --lens-dtype=bfloat16 --snapshot-update"
    note = _cross_dtype_note("cpu-float32", "cuda-bfloat16", cmd)
    assert "a bfloat16 run against a float32 golden" in note
    assert "docs/tolerances.md" in note and note.endswith(f"bless a golden of it: {cmd}")
    assert _cross_dtype_note("cpu-float32", "cuda-float32", cmd) == ""  # no dtype change
    assert _cross_dtype_note("cuda-float16", "cuda-float16", cmd) == ""
    assert _cross_dtype_note("cuda-bfloat16", "cpu-float32", cmd) == ""  # fp32 is the reference


def test_the_context_table_shows_the_drifted_extended_column(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    """A drift in an extended column (KL to the model's head): the rows around it show
    that column on both sides, as M, the title saying which column M is."""
    kl = entry(run)["metrics"]["next_token"]["kl_to_final_bits"]
    before = entry(golden)["metrics"]["next_token"]["kl_to_final_bits"][2]
    kl[2] += 1.0
    report = compare_golden(golden, run, FP32)
    assert [(d.section, d.metric, d.layer) for d in report.drifts] == [
        ("metrics", "next_token kl_to_final_bits", 2)
    ]
    lines = render_report(report).splitlines()
    start = lines.index("  next-token rows of prompt capital-de, M = kl_to_final_bits:")
    head = lines[start + 1].split()
    assert head[0] == "layer" and head[-4:] == ["M", "golden", "M", "run"]
    marked = next(line for line in lines if line.startswith("  >> 2 "))
    cells = marked.split()
    assert float(cells[-2]) == pytest.approx(before, rel=1e-4)
    assert float(cells[-1]) == pytest.approx(before + 1.0, rel=1e-4)


def test_the_context_table_of_a_records_drift_has_no_extra_column(
    golden: dict[str, Any], run: dict[str, Any]
) -> None:
    entry(run)["next_token"]["entropy"][3] += 0.25
    lines = render_report(compare_golden(golden, run, FP32)).splitlines()
    start = lines.index("  next-token rows of prompt capital-de:")
    assert lines[start + 1].split() == [
        "layer", "top1", "golden", "top1", "run", "H", "golden", "H", "run", "p1", "golden",
        "p1", "run",
    ]  # fmt: skip
