"""Goldens no test used (syrupy's unused snapshots): reported after the project's whole lens
selection, deleted by --snapshot-update only then; partial selections touch nothing."""

from __future__ import annotations

from _plugin_helpers import GENERATED, LensProject

KEPT, DROPPED = "synthetic-llama", "synthetic-gpt2"


def _setup(lens_project: LensProject) -> None:
    lens_project.ini(f"lens_models = {KEPT}")  # the project dropped synthetic-gpt2
    lens_project.copy_golden(KEPT, DROPPED)


def test_whole_selection_reports_the_golden_of_a_dropped_model(lens_project: LensProject) -> None:
    _setup(lens_project)
    result = lens_project.run()
    result.assert_outcomes(passed=len(GENERATED))
    assert (
        f"1 golden(s) no test used (their model is not in lens_models): "
        f"{DROPPED}/cpu-float32.json; --snapshot-update deletes them"
    ) in result.stdout.str()
    assert lens_project.golden(DROPPED).exists()


def test_snapshot_update_deletes_it_after_the_whole_selection(lens_project: LensProject) -> None:
    _setup(lens_project)
    kept = lens_project.golden(KEPT).read_bytes()
    result = lens_project.run("--snapshot-update")
    result.assert_outcomes(passed=len(GENERATED))
    assert f"deleted 1 golden(s) no test used (their model is not in lens_models): {DROPPED}/" in (
        result.stdout.str()
    )
    assert not (lens_project.path / "golden" / DROPPED).exists()  # the emptied folder too
    assert lens_project.golden(KEPT).read_bytes() == kept


def test_partial_selections_never_touch_other_goldens(lens_project: LensProject) -> None:
    _setup(lens_project)
    dropped = lens_project.golden(DROPPED).read_bytes()
    partial = (
        ("-k", "test_records", "--snapshot-update"),  # some generated tests deselected
        (f"--lens-models={KEPT}", "--snapshot-update"),  # models chosen on the command line
    )
    for args in partial:
        result = lens_project.run(*args)
        assert result.ret == 0, args
        assert "no test used" not in result.stdout.str(), args
        assert lens_project.golden(DROPPED).read_bytes() == dropped, args
