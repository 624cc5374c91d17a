"""--lens-preset / ini lens_preset: whose conventions the run follows, and its golden."""

from __future__ import annotations

import pytest
from _plugin_helpers import COMMITTED, GENERATED, LensProject, failed_models

from lenscheck.golden.store import read_golden

MODEL = "synthetic-llama"


def _copy_original(lens_project: LensProject) -> None:
    target = lens_project.golden(MODEL).with_name("cpu-float32.original.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((COMMITTED / MODEL / "cpu-float32.original.json").read_bytes())


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_original_runs_against_its_own_committed_golden(
    lens_project: LensProject, how: str
) -> None:
    _copy_original(lens_project)
    if how == "flag":
        result = lens_project.run(f"--lens-models={MODEL}", "--lens-preset=original")
    else:
        lens_project.ini("lens_preset = original")
        result = lens_project.run(f"--lens-models={MODEL}")
    result.assert_outcomes(passed=len(GENERATED))
    assert "preset=original decode_norm=next-ln1 bos=always schema=original" in result.stdout.str()
    golden = read_golden(lens_project.golden(MODEL).with_name("cpu-float32.original.json"))
    assert golden["settings"] == {
        "decode_norm": "next-ln1",
        "bos": "always",
        "schema": "original",
        "chat_template": False,
        "lens": "logit",
    }
    assert golden["prompts"]["capital-de"]["tokenization"]["input_ids"][0] == 1  # BOS first


def test_a_golden_of_the_other_preset_names_every_differing_setting(
    lens_project: LensProject,
) -> None:
    lens_project.copy_golden(MODEL)  # the standard preset's golden only
    result = lens_project.run(f"--lens-models={MODEL}", "--lens-preset=original")
    assert failed_models(result) == {MODEL: {"test_golden_file"}}
    out = " ".join(result.stdout.str().split())
    assert (
        "cpu-float32.json was blessed with decode_norm 'final' (this run: 'next-ln1'), bos "
        "'auto' (this run: 'always'), schema 'extended' (this run: 'original')"
    ) in out
    assert (
        f"create it with: pytest --lens-models={MODEL} --lens-preset=original --snapshot-update"
        in out
    )


def test_an_explicit_option_wins_over_the_preset(lens_project: LensProject) -> None:
    result = lens_project.run(
        f"--lens-models={MODEL}",
        "--lens-preset=original",
        "--lens-decode-norm=final",
        "--snapshot-update",
    )
    result.assert_outcomes(passed=len(GENERATED))
    path = lens_project.golden(MODEL).with_name("cpu-float32.bos-always.schema-original.json")
    assert read_golden(path)["settings"]["decode_norm"] == "final"


def test_an_unknown_preset_is_a_usage_error(lens_project: LensProject) -> None:
    result = lens_project.run(f"--lens-models={MODEL}", "--lens-preset=legacy")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: lenscheck: --lens-preset (ini: lens_preset): expected one of standard, "
            "original, got 'legacy'"
        ]
    )
