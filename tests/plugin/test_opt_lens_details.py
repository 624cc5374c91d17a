"""--lens-details / ini lens_details: a failing golden test lists every drifted value."""

from __future__ import annotations

import re
from typing import Any

import pytest
from _plugin_helpers import LensProject, failed_models

MODEL = "synthetic-llama"
PID = "capital-de"


def _shift_every_record_entropy(doc: dict[str, Any]) -> None:
    grid = doc["prompts"][PID]["records"]["entropy"]
    for row in grid:
        for pos in range(len(row)):
            row[pos] += 0.5


def _drift_lines(out: str) -> list[str]:
    return re.findall(r"^\s+records: prompt \S+ layer \d+ pos \d+ entropy: .*$", out, re.M)


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_details_lists_every_drift_the_default_report_shortens(
    lens_project: LensProject, how: str
) -> None:
    lens_project.copy_golden(MODEL)
    lens_project.edit_golden(MODEL, _shift_every_record_entropy)
    short = lens_project.run(f"--lens-models={MODEL}", "-k", "test_records")
    assert failed_models(short) == {MODEL: {"test_records"}}
    out = short.stdout.str()
    total = int(re.search(r"records: (\d+) of \d+ values drifted", out)[1])  # type: ignore[index]
    assert total > 12
    assert len(_drift_lines(out)) == 12
    assert f"... and {total - 12} more (every one: --lens-details" in out
    if how == "flag":
        full = lens_project.run(f"--lens-models={MODEL}", "-k", "test_records", "--lens-details")
    else:
        lens_project.ini("lens_details = true")
        full = lens_project.run(f"--lens-models={MODEL}", "-k", "test_records")
    assert failed_models(full) == {MODEL: {"test_records"}}
    assert len(_drift_lines(full.stdout.str())) == total
    assert "more (every one" not in full.stdout.str()
