"""--lens-decode-norm / ini lens_decode_norm: where the lens decodes, and its own golden."""

from __future__ import annotations

import re

import pytest
from _plugin_helpers import GENERATED, LensProject, failed_models

from lenscheck.golden.store import read_golden

MODEL = "synthetic-gemma3"
PROBE = """
def test_seen(lens_run):
    d = lens_run.diagnostics
    print(f"PROBE decode={d['decode_norm']} chosen={d['decoding_ablation']['chosen']} "
          f"use_norm_lens={d['use_norm_lens']}")
"""


@pytest.mark.parametrize("point", ["next-ln1", "raw"])
def test_each_point_gets_its_own_golden_beside_the_default(
    lens_project: LensProject, point: str
) -> None:
    default = lens_project.copy_golden(MODEL)[MODEL]
    before = default.read_bytes()
    lens_project.pytester.makepyfile(test_seen=PROBE)
    created = lens_project.run(
        "-s", f"--lens-models={MODEL}", f"--lens-decode-norm={point}", "--snapshot-update"
    )
    created.assert_outcomes(passed=len(GENERATED) + 1)
    assert re.findall(r"PROBE .*", created.stdout.str()) == [
        f"PROBE decode={point} chosen={point} use_norm_lens={point != 'raw'}"
    ]
    path = default.with_name(f"cpu-float32.decode-{point}.json")
    golden = read_golden(path)
    assert (golden["decode_norm"], golden["facts"]["decode_norm"]) == (point, point)
    assert default.read_bytes() == before  # the final-norm golden is another file, untouched
    # The chosen point decides the records; every point is in the ablation of both goldens.
    ours, theirs = golden["prompts"]["capital-de"], read_golden(default)["prompts"]["capital-de"]
    assert ours["records"] != theirs["records"]
    assert ours["decoding"][point]["top1"] == ours["next_token"]["top1"]
    assert theirs["decoding"][point]["top1"] == ours["next_token"]["top1"]
    again = lens_project.run(f"--lens-models={MODEL}", f"--lens-decode-norm={point}")
    again.assert_outcomes(passed=len(GENERATED) + 1)  # the generated tests and test_seen


def test_ini_equivalent_and_the_rebless_command(lens_project: LensProject) -> None:
    lens_project.ini("lens_decode_norm = next-ln1")
    lens_project.copy_golden(MODEL)  # a final-norm golden is not a next-ln1 one
    result = lens_project.run(f"--lens-models={MODEL}")
    assert failed_models(result) == {MODEL: {"test_golden_file"}}
    out = result.stdout.str()
    # The golden that is there, and how its settings differ from this run's.
    assert ("cpu-float32.json was blessed with decode_norm 'final' (this run: 'next-ln1')") in out
    assert (
        f"create it with: pytest --lens-models={MODEL} --lens-decode-norm=next-ln1 "
        "--snapshot-update"
    ) in out
    assert "decode_norm=next-ln1" in out  # the header


@pytest.mark.parametrize("value", ["final-norm", "ln1", "none"])
def test_invalid_point_is_a_usage_error(lens_project: LensProject, value: str) -> None:
    result = lens_project.run(f"--lens-models={MODEL}", f"--lens-decode-norm={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: lenscheck: --lens-decode-norm (ini: lens_decode_norm): expected one of "
            f"next-ln1, final, raw, got '{value}'"
        ]
    )
