"""--lens-golden-dir / ini lens_golden_dir: where goldens are read and created."""

from __future__ import annotations

import json

import pytest
from _plugin_helpers import GENERATED, LensProject

from lenscheck.golden.payload import FORMAT_VERSION
from lenscheck.golden.store import read_golden

MODEL = "synthetic-neox"


def assert_created(path, model: str = MODEL) -> None:  # type: ignore[no-untyped-def]
    assert path.is_file(), f"{path} was not created"
    golden = read_golden(path)
    assert (golden["format_version"], golden["model"], golden["class"]) == (
        FORMAT_VERSION,
        model,
        "cpu-float32",
    )


def test_custom_dir_is_used_for_creation_and_reading(lens_project: LensProject) -> None:
    created = lens_project.run(
        f"--lens-models={MODEL}", "--lens-golden-dir=custom/goldens", "--snapshot-update"
    )
    created.assert_outcomes(passed=len(GENERATED))
    assert "1 snapshot generated." in created.stdout.str()
    assert f"golden={lens_project.path / 'custom' / 'goldens'}" in created.stdout.str()
    assert_created(lens_project.path / "custom" / "goldens" / MODEL / "cpu-float32.json")
    assert not (lens_project.path / "golden").exists()  # the default was not touched

    # Read back from the same folder: passes; the default folder has nothing, so it fails.
    lens_project.run(f"--lens-models={MODEL}", "--lens-golden-dir=custom/goldens").assert_outcomes(
        passed=len(GENERATED)
    )
    missing = lens_project.run(f"--lens-models={MODEL}")
    # One failure (test_golden_file, with the fix); the value tests skip; invariants need none.
    # test_invariants, test_rules and test_measurements need no golden.
    missing.assert_outcomes(passed=3, failed=1, skipped=len(GENERATED) - 4)
    assert (
        f"no golden for {MODEL} (cpu-float32, suite default, "
        "decode_norm=final bos=auto schema=extended chat_template=False lens=logit) in "
        f"{lens_project.path / 'golden' / MODEL}; create it with: "
        f"pytest --lens-models={MODEL} --snapshot-update"
    ) in missing.stdout.str()


def test_relative_dir_is_relative_to_the_rootdir(
    lens_project: LensProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a subfolder: the golden still goes under the rootdir (where pytest.ini is)."""
    sub = lens_project.path / "sub" / "deeper"
    sub.mkdir(parents=True)
    lens_project.pytester.makepyfile(**{"sub/deeper/test_mine": "def test_mine():\n    pass\n"})
    monkeypatch.chdir(sub)
    result = lens_project.run(
        f"--lens-models={MODEL}", "--lens-golden-dir=gold", "--snapshot-update"
    )
    result.assert_outcomes(passed=len(GENERATED) + 1)
    assert f"rootdir: {lens_project.path}" in result.stdout.str()
    assert_created(lens_project.path / "gold" / MODEL / "cpu-float32.json")
    assert not (sub / "gold").exists()


def test_absolute_dir(lens_project: LensProject, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = lens_project.run(
        f"--lens-models={MODEL}", f"--lens-golden-dir={elsewhere}", "--snapshot-update"
    )
    result.assert_outcomes(passed=len(GENERATED))
    assert_created(elsewhere / MODEL / "cpu-float32.json")


def test_ini_equivalent_reads_the_committed_golden_there(lens_project: LensProject) -> None:
    lens_project.ini("lens_golden_dir = ref/golden")
    lens_project.copy_golden(MODEL, golden_dir="ref/golden")
    result = lens_project.run(f"--lens-models={MODEL}")
    result.assert_outcomes(passed=len(GENERATED))
    assert f"golden={lens_project.path / 'ref' / 'golden'}" in result.stdout.str()
    assert "1 snapshot passed." in result.stdout.str()

    # The option wins over the ini: an empty folder there means "no golden".
    result = lens_project.run(f"--lens-models={MODEL}", "--lens-golden-dir=other")
    # test_invariants, test_rules and test_measurements need no golden.
    result.assert_outcomes(passed=3, failed=1, skipped=len(GENERATED) - 4)
    assert f"in {lens_project.path / 'other' / MODEL}; create it with: " in result.stdout.str()


def test_ini_dir_is_where_snapshot_update_writes(lens_project: LensProject) -> None:
    lens_project.ini("lens_golden_dir = golden-ini")
    result = lens_project.run(f"--lens-models={MODEL}", "--snapshot-update")
    result.assert_outcomes(passed=len(GENERATED))
    path = lens_project.path / "golden-ini" / MODEL / "cpu-float32.json"
    assert_created(path)
    # Human-readable: one key per line (indent 1), trailing newline.
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f'{{\n "format_version": {FORMAT_VERSION},\n') and text.endswith("}\n")
    assert json.loads(text)["model_stats"]["num_layers"] == 3
