"""--lens-dtype / ini lens_dtype: the compute dtype, the golden class and its tolerances."""

from __future__ import annotations

import re

import pytest
from _plugin_helpers import GENERATED, LensProject, failed_models

PROBE = """
def test_seen(lens_run):
    print(f"PROBE {lens_run.model} class={lens_run.golden_class} "
          f"dtype={lens_run.payload['environment']['dtype']}")
"""

CROSS_NOTE = "cross-class tolerances (golden cpu-float32, run cpu-bfloat16: the looser of both)"


def probes(result: pytest.RunResult) -> list[str]:
    return sorted(re.findall(r"PROBE .*", result.stdout.str()))  # -s: after "test_probe.py "


@pytest.mark.parametrize("value", ["auto", "float32"])
def test_float32_on_cpu(lens_project: LensProject, value: str) -> None:
    lens_project.copy_golden("synthetic-llama")
    lens_project.pytester.makepyfile(test_seen=PROBE)
    result = lens_project.run("-s", "--lens-models=synthetic-llama", f"--lens-dtype={value}")
    result.assert_outcomes(passed=len(GENERATED) + 1)
    assert probes(result) == ["PROBE synthetic-llama class=cpu-float32 dtype=torch.float32"]
    assert "cross-class" not in result.stdout.str()  # same class: plain fp32 tolerances


def test_bfloat16_on_cpu_compares_with_the_float32_golden_and_says_so(
    lens_project: LensProject,
) -> None:
    """bf16 runs are class cpu-bfloat16; with only the fp32 golden committed they are compared
    with it under the looser of both classes' tolerances, and the output says so: in the
    end-of-run "cross-class comparisons" section when the tests pass, in the drift report when
    they fail.

    With the default cpu-bfloat16 tolerance (entropy 0.05 bit) only synthetic-opt-postnorm
    stays within it; the other tiny random models move 0.06-0.12 bit in entropy under bf16
    rounding, and fail with a report that names the metric, both classes and the tolerance.
    """
    models = ["synthetic-opt-postnorm", "synthetic-llama"]
    lens_project.copy_golden(*models)
    lens_project.pytester.makepyfile(test_seen=PROBE)
    result = lens_project.run("-s", f"--lens-models={','.join(models)}", "--lens-dtype=bfloat16")
    out = result.stdout.str()
    assert probes(result) == [
        "PROBE synthetic-llama class=cpu-bfloat16 dtype=torch.bfloat16",
        "PROBE synthetic-opt-postnorm class=cpu-bfloat16 dtype=torch.bfloat16",
    ]
    # opt-postnorm passes everything; llama fails on entropy, with the cross-class report.
    assert failed_models(result) == {
        "synthetic-llama": {"test_trajectory", "test_final_prediction", "test_golden_file"}
    }
    assert "synthetic-llama (cpu-bfloat16 run vs cpu-float32 golden" in out
    assert f"compared with {CROSS_NOTE}" in out
    assert "entropy: golden 6.40703 vs run 6.2878 |Δ| 0.119 > tol 0.05" in out
    # The passing model says so too, once, naming the golden it used.
    result.stdout.fnmatch_lines(
        [
            "*= lenscheck: cross-class comparisons =*",
            f"synthetic-opt-postnorm: compared with */golden/synthetic-opt-postnorm/"
            f"cpu-float32.json using {CROSS_NOTE}",
        ]
    )
    assert out.count("synthetic-opt-postnorm: compared with") == 1
    # No bf16 golden was written by a plain run.
    assert not lens_project.golden("synthetic-opt-postnorm", cls="cpu-bfloat16").exists()


def test_ini_lens_dtype(lens_project: LensProject) -> None:
    lens_project.ini("lens_dtype = bf16")
    lens_project.pytester.makepyfile(test_seen=PROBE)
    result = lens_project.run("-s", "--lens-models=synthetic-gpt2", "-k", "seen")
    result.assert_outcomes(passed=1, deselected=len(GENERATED))
    assert probes(result) == ["PROBE synthetic-gpt2 class=cpu-bfloat16 dtype=torch.bfloat16"]


@pytest.mark.parametrize("value", ["int8", "float8", "double precision"])
def test_invalid_dtype_is_a_usage_error(lens_project: LensProject, value: str) -> None:
    result = lens_project.run("--lens-models=synthetic-llama", f"--lens-dtype={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: lenscheck: dtype must be auto, float32, float16 or bfloat16, got '{value}'"]
    )
