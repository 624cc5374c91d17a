"""--lens-fp32-unembed / ini lens_fp32_unembed: the unembedding in fp32 whatever the dtype."""

from __future__ import annotations

import pytest
from _plugin_helpers import GENERATED, LensProject

from lenscheck.golden.store import read_golden

MODEL = "synthetic-llama"


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_a_half_precision_run_unembeds_in_fp32(lens_project: LensProject, how: str) -> None:
    half = ("--lens-dtype=bfloat16", "--lens-device=cpu")
    if how == "ini":
        lens_project.ini("lens_fp32_unembed = true")
    flags = ["--lens-fp32-unembed"] if how == "flag" else []
    lens_project.run(f"--lens-models={MODEL}", *half, *flags, "--snapshot-update")
    promoted = read_golden(lens_project.golden(MODEL, cls="cpu-bfloat16"))
    assert promoted["facts"]["unembed_dtype"] == "torch.float32"
    lens_project.ini()
    lens_project.golden(MODEL, cls="cpu-bfloat16").unlink()
    lens_project.run(f"--lens-models={MODEL}", *half, "--snapshot-update").assert_outcomes(
        passed=len(GENERATED)
    )
    plain = read_golden(lens_project.golden(MODEL, cls="cpu-bfloat16"))
    assert plain["facts"]["unembed_dtype"] == "torch.bfloat16"
