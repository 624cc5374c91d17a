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


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_passes_against_the_float32_golden_and_says_so(
    lens_project: LensProject, dtype: str
) -> None:
    """Half-precision runs are class cpu-<dtype>; with only the fp32 golden committed they are
    compared with it under cross-class tolerances (the looser of both classes and the
    measured half-precision spread, docs/tolerances.md), pass, and the end of the run says
    which golden each model used."""
    models = ["synthetic-opt-postnorm", "synthetic-llama"]
    goldens = lens_project.copy_golden(*models)
    before = {m: p.read_bytes() for m, p in goldens.items()}
    lens_project.pytester.makepyfile(test_seen=PROBE)
    result = lens_project.run("-s", f"--lens-models={','.join(models)}", f"--lens-dtype={dtype}")
    result.assert_outcomes(passed=2 * len(GENERATED) + 2)  # and test_seen per model
    assert probes(result) == [
        f"PROBE synthetic-llama class=cpu-{dtype} dtype=torch.{dtype}",
        f"PROBE synthetic-opt-postnorm class=cpu-{dtype} dtype=torch.{dtype}",
    ]
    note = f"cross-class tolerances (golden cpu-float32, run cpu-{dtype}: the looser of both)"
    result.stdout.fnmatch_lines(
        [
            "*= lenscheck =*",
            f"synthetic-opt-postnorm: compared with */golden/synthetic-opt-postnorm/"
            f"cpu-float32.json using {note}",
        ]
    )
    assert result.stdout.str().count("synthetic-llama: compared with") == 1
    # A plain run writes no half-precision golden and leaves the float32 ones alone.
    assert not lens_project.golden("synthetic-llama", cls=f"cpu-{dtype}").exists()
    assert {m: p.read_bytes() for m, p in goldens.items()} == before


def test_a_real_bfloat16_drift_still_fails(lens_project: LensProject) -> None:
    """The cross-class tolerances are not a pass: a golden moved by more than the measured
    half-precision spread fails, with a report naming both classes."""
    lens_project.copy_golden("synthetic-llama")

    def drift(data: dict) -> None:  # type: ignore[type-arg]
        data["prompts"]["capital-de"]["next_token"]["entropy"][2] += 3.0

    lens_project.edit_golden("synthetic-llama", drift)
    result = lens_project.run("--lens-models=synthetic-llama", "--lens-dtype=bfloat16")
    assert failed_models(result) == {"synthetic-llama": {"test_trajectory"}}
    out = result.stdout.str()
    assert "synthetic-llama, suite default: golden cpu-float32 (" in out
    assert "cpu-float32.json) vs run cpu-bfloat16\n" in out
    assert f"compared with {CROSS_NOTE}" in out
    assert "> tol 0.39" in out


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
        [
            "ERROR: lenscheck: --lens-dtype (ini: lens_dtype): expected one of auto, float32, "
            f"float16, bfloat16, got '{value}'"
        ]
    )
