"""--snapshot-update (syrupy's option): creates and re-blesses goldens, one model's only."""

from __future__ import annotations

import json
from pathlib import Path

from _plugin_helpers import COMMITTED, GENERATED, LensProject, snapshot_summary

from lenscheck.golden.compare import compare_golden
from lenscheck.golden.payload import FORMAT_VERSION
from lenscheck.golden.store import read_golden
from lenscheck.golden.tolerances import DEFAULT_TOLERANCES

ALL_COMMITTED = sorted(p.name for p in COMMITTED.iterdir() if (p / "cpu-float32.json").is_file())

#: A user's own syrupy test next to the lens tests (its snapshots live in __snapshots__/).
USER_SNAPSHOTS = """
def test_kept(snapshot):
    assert snapshot == {"kept": 1}
"""
USER_ORPHAN = """
def test_dropped_later(snapshot):
    assert snapshot == {"dropped": 2}
"""


def snapshot_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def test_creates_the_golden_in_the_current_format(lens_project: LensProject) -> None:
    result = lens_project.run("--lens-models=synthetic-llama", "--snapshot-update")
    result.assert_outcomes(passed=len(GENERATED))
    assert snapshot_summary(result) == "1 snapshot generated."
    path = lens_project.path / "golden" / "synthetic-llama" / "cpu-float32.json"
    assert sorted(p.relative_to(lens_project.path) for p in lens_project.path.rglob("*.json")) == [
        Path("golden/synthetic-llama/cpu-float32.json")
    ]
    golden = read_golden(path)
    assert golden["format_version"] == FORMAT_VERSION == 3
    assert (golden["model"], golden["suite"], golden["class"]) == (
        "synthetic-llama",
        "default",
        "cpu-float32",
    )
    assert golden["environment"]["device"] == "cpu"
    rows = golden["prompts"]["capital-de"]["next_token"]
    assert rows["layer"] == [0, 1, 2, 3]
    # Same numbers as the committed golden (same code, same model, same class).
    committed = json.loads((COMMITTED / "synthetic-llama" / "cpu-float32.json").read_text())
    old = committed["prompts"]["capital-de"]["next_token"]
    assert rows["top1"] == old["top1"]
    assert max(abs(a - b) for a, b in zip(rows["entropy"], old["entropy"])) < 1e-4


def test_other_models_goldens_are_kept_and_not_reported_unused(lens_project: LensProject) -> None:
    others = [m for m in ALL_COMMITTED if m != "synthetic-llama"]
    assert "embedded" in others and len(others) == 7  # embedded-gemma3 and -qwen2 too
    lens_project.copy_golden(*others)
    # Another class of the selected model (say, from a GPU machine) must survive too.
    gpu = lens_project.golden("synthetic-gpt2", cls="cuda-float16")
    gpu.write_text(
        (COMMITTED / "synthetic-gpt2" / "cpu-float32.json")
        .read_text()
        .replace('"class": "cpu-float32"', '"class": "cuda-float16"'),
        encoding="utf-8",
    )
    # And a user's own syrupy snapshot that becomes unused: the control that proves this
    # syrupy reports unused snapshots, and in which words.
    lens_project.pytester.makepyfile(test_user=USER_SNAPSHOTS + USER_ORPHAN)
    lens_project.run("-k", "test_user", "--snapshot-update").assert_outcomes(passed=2)
    lens_project.pytester.makepyfile(test_user=USER_SNAPSHOTS)
    before = snapshot_bytes(lens_project.path / "golden")

    # 1. Create llama's golden while every other model's golden sits next to it.
    created = lens_project.run("--lens-models=synthetic-llama,synthetic-gpt2", "--snapshot-update")
    created.assert_outcomes(passed=2 * len(GENERATED) + 1)
    # gpt2's golden and the user's kept snapshot passed, llama's was generated, and the
    # only unused snapshot syrupy saw (and deleted) is the user's orphan.
    assert snapshot_summary(created).splitlines() == [
        "2 snapshots passed. 1 snapshot generated. 1 unused snapshot deleted.",
        "Deleted test_dropped_later (__snapshots__/test_user.ambr)",
    ]
    after = snapshot_bytes(lens_project.path / "golden")
    assert set(after) == set(before) | {"synthetic-llama/cpu-float32.json"}
    assert {k: after[k] for k in before} == before  # byte for byte, GPU class included

    # 2. A plain run of just one model: nothing reported unused, nothing touched.
    checked = lens_project.run("--lens-models=synthetic-llama")
    checked.assert_outcomes(passed=len(GENERATED) + 1)
    assert snapshot_summary(checked) == "2 snapshots passed."  # llama's and the user's
    assert snapshot_bytes(lens_project.path / "golden") == after

    # 3. --snapshot-update again with only llama selected: still no deletion.
    again = lens_project.run("--lens-models=synthetic-llama", "--snapshot-update")
    again.assert_outcomes(passed=len(GENERATED) + 1)
    assert snapshot_summary(again) == "2 snapshots passed."
    assert snapshot_bytes(lens_project.path / "golden") == after


def test_rebless_restores_an_edited_golden(lens_project: LensProject) -> None:
    lens_project.copy_golden("synthetic-gpt2", "synthetic-llama")
    committed = read_golden(lens_project.golden("synthetic-llama"))
    gpt2_before = lens_project.golden("synthetic-gpt2").read_bytes()

    def drift(data: dict) -> None:  # type: ignore[type-arg]
        data["prompts"]["capital-de"]["next_token"]["entropy"][2] += 0.5
        data["prompts"]["gone"] = data["prompts"]["capital-de"]

    lens_project.edit_golden("synthetic-llama", drift)
    result = lens_project.run("--lens-models=synthetic-llama", "--snapshot-update")
    result.assert_outcomes(passed=len(GENERATED))
    assert snapshot_summary(result) == "1 snapshot updated."
    restored = read_golden(lens_project.golden("synthetic-llama"))
    assert list(restored["prompts"]) == ["capital-de"]  # the stray prompt is gone
    report = compare_golden(committed, restored, DEFAULT_TOLERANCES["cpu-float32"])
    assert report.ok and report.identity_ok  # and the drift too
    assert lens_project.golden("synthetic-gpt2").read_bytes() == gpt2_before


def test_within_tolerance_rebless_leaves_the_file_alone(lens_project: LensProject) -> None:
    """Re-blessing rewrites a golden only when it no longer says what the run says."""
    path = lens_project.copy_golden("synthetic-llama")["synthetic-llama"]

    def nudge(data: dict) -> None:  # type: ignore[type-arg]
        data["prompts"]["capital-de"]["next_token"]["entropy"][2] += 1e-6

    lens_project.edit_golden("synthetic-llama", nudge)
    before = path.read_bytes()
    result = lens_project.run("--lens-models=synthetic-llama", "--snapshot-update")
    result.assert_outcomes(passed=len(GENERATED))
    assert snapshot_summary(result) == "1 snapshot passed."
    assert path.read_bytes() == before
