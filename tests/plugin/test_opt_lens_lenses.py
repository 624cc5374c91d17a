"""--lens-lenses / ini lens_lenses: several lenses in one session, each with its own golden
file and its own generated tests; one model run serves them all."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from _plugin_helpers import GENERATED, REPO, LensProject, failed_models

from lenscheck.golden.store import read_golden

MODEL = "synthetic-llama"
TUNED = REPO / "tests" / "data" / "tuned" / "llama"  # written by tuned-lens 0.2.0
LENSES = f"logit,tuned={TUNED}"


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_each_lens_gets_its_golden_and_its_tests(lens_project: LensProject, how: str) -> None:
    args = [f"--lens-models={MODEL}"]
    if how == "flag":
        args.append(f"--lens-lenses={LENSES}")
    else:
        lens_project.ini(f"lens_lenses = {LENSES}")
    created = lens_project.run(*args, "--snapshot-update")
    created.assert_outcomes(passed=2 * len(GENERATED))
    ids = {r.nodeid for r in created.reprec.getreports("pytest_runtest_logreport")}  # type: ignore[attr-defined]
    assert f"lenscheck::test_records[{MODEL}-tuned]" in ids
    assert f"lenscheck::test_records[{MODEL}-logit]" in ids
    tuned = read_golden(lens_project.golden(MODEL).with_name("cpu-float32.lens-tuned.json"))
    logit = read_golden(lens_project.golden(MODEL))
    assert (tuned["settings"]["lens"], logit["settings"]["lens"]) == ("tuned", "logit")
    facts = tuned["facts"]["lens"]
    assert facts["kind"] == "tuned" and len(facts["translators_sha256"]) == 64
    assert tuned["prompts"]["capital-de"]["records"] != logit["prompts"]["capital-de"]["records"]
    lens_project.run(*args).assert_outcomes(passed=2 * len(GENERATED))


def test_a_drift_in_one_lens_fails_that_lens_only(lens_project: LensProject) -> None:
    flag = f"--lens-lenses={LENSES}"
    lens_project.run(f"--lens-models={MODEL}", flag, "--snapshot-update")
    path = lens_project.golden(MODEL).with_name("cpu-float32.lens-tuned.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["prompts"]["capital-de"]["records"]["entropy"][1][2] += 0.5
    path.write_text(json.dumps(data), encoding="utf-8")
    result = lens_project.run(f"--lens-models={MODEL}", flag)
    assert failed_models(result) == {f"{MODEL}-tuned": {"test_records"}}
    out = result.stdout.str()
    (cmd,) = {line.split("re-bless: ", 1)[1] for line in out.splitlines() if "re-bless: " in line}
    assert shlex.split(cmd)[2] == flag  # the command carries the lenses


def test_another_checkpoint_is_a_fact_of_the_golden(
    lens_project: LensProject, tmp_path: Path
) -> None:
    import shutil

    import torch

    lens_project.run(f"--lens-models={MODEL}", f"--lens-lenses=tuned={TUNED}", "--snapshot-update")
    other = tmp_path / "other"
    shutil.copytree(TUNED, other)
    params = torch.load(other / "params.pt", weights_only=True)
    params["0.bias"] = params["0.bias"] + 0.01
    torch.save(params, other / "params.pt")
    result = lens_project.run(f"--lens-models={MODEL}", f"--lens-lenses=tuned={other}")
    assert "test_schema" in failed_models(result)[MODEL]
    assert "schema: fact lens: golden" in result.stdout.str()


def test_a_checkpoint_of_another_model_is_refused_in_one_line(lens_project: LensProject) -> None:
    neox = REPO / "tests" / "data" / "tuned" / "neox"
    result = lens_project.run(f"--lens-models={MODEL}", f"--lens-lenses=tuned={neox}")
    assert failed_models(result) == {MODEL: set(GENERATED)}
    out = result.stdout.str()
    assert "Traceback" not in out
    assert "synthetic-neox" in out and MODEL in out
