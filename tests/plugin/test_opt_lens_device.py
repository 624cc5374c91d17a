"""--lens-device / ini lens_device: where the lens runs, and which golden class it gets."""

from __future__ import annotations

import re

import pytest
from _plugin_helpers import GENERATED, LensProject

#: A user test that prints what the run saw (shown with -s; asserted by the outer test).
PROBE = """
def test_seen(lens_run, lens_settings):
    print(f"PROBE requested={lens_settings.device} device={lens_run.device} "
          f"class={lens_run.golden_class} env={lens_run.payload['environment']['device']}")
"""


def probe_line(result: pytest.RunResult) -> str:
    lines = re.findall(r"PROBE .*", result.stdout.str())  # -s: after "test_probe.py "
    assert len(lines) == 1, result.stdout.str()
    return str(lines[0])


def test_cpu_passes_against_the_committed_golden(lens_project: LensProject) -> None:
    lens_project.copy_golden("synthetic-gpt2")
    lens_project.pytester.makepyfile(test_seen=PROBE)
    result = lens_project.run("-s", "--lens-models=synthetic-gpt2", "--lens-device=cpu")
    result.assert_outcomes(passed=len(GENERATED) + 1)
    assert "device=cpu dtype=auto" in result.stdout.str()  # the header
    assert probe_line(result) == ("PROBE requested=cpu device=cpu class=cpu-float32 env=cpu")


def test_ini_lens_device(lens_project: LensProject) -> None:
    lens_project.ini("lens_device = cpu")
    lens_project.pytester.makepyfile(test_seen=PROBE)
    result = lens_project.run("-s", "--lens-models=synthetic-gpt2", "-k", "seen")
    result.assert_outcomes(passed=1, deselected=len(GENERATED))
    assert probe_line(result).startswith("PROBE requested=cpu device=cpu class=cpu-float32")


@pytest.mark.parametrize("source", ["option", "ini"])
def test_unavailable_cuda_is_a_usage_error_before_collection(
    lens_project: LensProject, source: str
) -> None:
    """A GPU gate whose driver broke must not go green on the CPU goldens."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: nothing is missing")
    lens_project.copy_golden("synthetic-gpt2")
    lens_project.pytester.makepyfile(test_seen=PROBE)
    if source == "ini":
        lens_project.ini("lens_device = cuda:1")
        result = lens_project.run("--lens-models=synthetic-gpt2")
        device = "cuda:1"
    else:
        result = lens_project.run("--lens-models=synthetic-gpt2", "--lens-device=cuda")
        device = "cuda"
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: lenscheck: device '{device}' was requested but is not available here: "
            f"torch {torch.__version__} with CUDA *, 0 CUDA device(s) visible, "
            "CUDA_VISIBLE_DEVICES=*, MPS available: *. Choose an available device with "
            "--lens-device (ini: lens_device) (auto picks cuda, then mps, then cpu)"
        ]
    )
    assert "collected" not in result.stdout.str()  # stopped before collection
    assert "PROBE" not in result.stdout.str()


def test_auto_on_a_cpu_machine_says_so_loudly(lens_project: LensProject) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: auto picks it")
    result = lens_project.run("--collect-only", "--lens-models=synthetic-gpt2")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "lenscheck: classes: synthetic-gpt2 cpu-float32",
            "lenscheck: WARNING: --lens-device=auto found no GPU, the lens runs on the CPU and "
            "compares with CPU goldens (torch *); pass --lens-device=cuda to make a missing GPU "
            "an error",
        ]
    )


@pytest.mark.parametrize("value", ["tpu", "gpu", "cuda0", ""])
def test_invalid_device_is_a_usage_error(lens_project: LensProject, value: str) -> None:
    if value:
        result = lens_project.run("--lens-models=synthetic-gpt2", f"--lens-device={value}")
    else:  # an ini value that is not a device
        lens_project.ini("lens_device = metal")
        result = lens_project.run("--lens-models=synthetic-gpt2")
        value = "metal"
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: lenscheck: --lens-device (ini: lens_device): expected one of auto, cuda, "
            f"mps, cpu or cuda:N, got '{value}'"
        ]
    )
    # The message names what is wrong, nothing unrelated (it used to append the backends).
    assert "backends" not in result.stderr.str()
