"""--lens-prompts / ini lens_prompts: the user's own prompt suite, its goldens, its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _plugin_helpers import COMMITTED, GENERATED, LensProject, failed_models, snapshot_summary

from lenscheck.golden.store import dumps_golden, read_golden

MODEL = "synthetic-llama"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "prompts" / "capitals.toml"
SUITE = """
name = "mine"

[[prompts]]
id = "capital-fr"
prompt = "The capital of France is called simply"
answer = "Paris"
probes = ["Paris is the capital of"]

[[prompts]]
id = "capital-it"
prompt = "The capital of Italy is called simply"
answer = "Rome"
"""


def write_suite(project: LensProject, text: str = SUITE, name: str = "suites/mine.toml") -> Path:
    path = project.path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_suite_gets_its_own_golden_and_reports_per_prompt(lens_project: LensProject) -> None:
    write_suite(lens_project)
    lens_project.ini("lens_prompts = suites/mine.toml")
    created = lens_project.run(f"--lens-models={MODEL}", "--snapshot-update")
    created.assert_outcomes(passed=len(GENERATED))
    path = lens_project.path / "golden" / MODEL / "mine" / "cpu-float32.json"
    golden = read_golden(path)
    assert (golden["suite"], list(golden["prompts"])) == ("mine", ["capital-fr", "capital-it"])
    assert golden["prompts"]["capital-fr"]["probes"]["prompt"] == ["Paris is the capital of"]
    assert golden["prompts"]["capital-it"]["probes"]["prompt"] == []
    assert "suite=mine (2 prompts)" in created.stdout.str()  # the header

    def drift(data: dict) -> None:  # type: ignore[type-arg]
        data["prompts"]["capital-it"]["records"]["entropy"][2][3] += 0.5

    data = json.loads(path.read_text(encoding="utf-8"))
    drift(data)
    path.write_text(dumps_golden(data), encoding="utf-8")
    result = lens_project.run(f"--lens-models={MODEL}")
    assert failed_models(result) == {MODEL: {"test_records"}}
    out = result.stdout.str()
    assert "records: 1 of " in out and "(entropy, prompt capital-it layer 2 pos 3)" in out
    assert (
        f"re-bless: pytest --lens-models={MODEL} --lens-prompts=suites/mine.toml --snapshot-update"
    ) in out


def test_option_overrides_ini_and_paths_are_relative_to_the_rootdir(
    lens_project: LensProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_suite(lens_project)
    write_suite(lens_project, SUITE.replace('name = "mine"', 'name = "other"'), "other.toml")
    lens_project.ini("lens_prompts = suites/mine.toml")
    sub = lens_project.path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    result = lens_project.run(
        "--collect-only", f"--lens-models={MODEL}", "--lens-prompts=other.toml"
    )
    assert result.ret == 0
    assert "suite=other (2 prompts)" in result.stdout.str()


def test_the_example_suite_passes_against_its_committed_golden(lens_project: LensProject) -> None:
    target = lens_project.path / "golden" / MODEL / "capitals" / "cpu-float32.json"
    target.parent.mkdir(parents=True)
    target.write_bytes((COMMITTED / MODEL / "capitals" / "cpu-float32.json").read_bytes())
    result = lens_project.run(f"--lens-models={MODEL}", f"--lens-prompts={EXAMPLE}")
    result.assert_outcomes(passed=len(GENERATED))
    assert snapshot_summary(result) == "1 snapshot passed."


BAD = {
    "not-toml": ("[[prompts]\nid = 'x'", "not TOML ("),
    "duplicate-id": (
        SUITE.replace('id = "capital-it"', 'id = "capital-fr"'),
        "prompt #2 (id 'capital-fr'): prompt id 'capital-fr' appears twice (first in prompt #1)",
    ),
    "bad-slug": (
        SUITE.replace('id = "capital-it"', 'id = "Capital IT"'),
        "prompt #2 (id 'Capital IT'): id 'Capital IT' is not a slug",
    ),
    "empty-prompt": (
        SUITE.replace('prompt = "The capital of Italy is called simply"', 'prompt = "  "'),
        "prompt #2 (id 'capital-it'): prompt is missing or empty; expected the text the lens reads",
    ),
    "empty-answer": (
        SUITE.replace('answer = "Rome"', 'answer = ""'),
        "prompt #2 (id 'capital-it'): answer is missing or empty",
    ),
    "unknown-key": (
        SUITE.replace('answer = "Rome"', 'answer = "Rome"\nexpected = "Rome"'),
        "prompt #2 (id 'capital-it'): unknown key(s) 'expected'; allowed: id, prompt, answer, "
        "probes",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_suite_is_a_usage_error_naming_file_and_entry(
    lens_project: LensProject, case: str
) -> None:
    text, message = BAD[case]
    path = write_suite(lens_project, text)
    result = lens_project.run(f"--lens-models={MODEL}", "--lens-prompts=suites/mine.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"ERROR: --lens-prompts: {path}: " in err
    assert message in err


def test_a_missing_suite_file(lens_project: LensProject) -> None:
    result = lens_project.run(f"--lens-models={MODEL}", "--lens-prompts=nope.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --lens-prompts: */nope.toml: cannot read the prompt suite (*); pass an "
            "existing TOML file with --prompts (pytest: --lens-prompts)"
        ]
    )


def test_a_prompt_longer_than_the_context_names_file_and_entry(lens_project: LensProject) -> None:
    long = " ".join(["city"] * 200)
    path = write_suite(lens_project, SUITE.replace("The capital of Italy is called simply", long))
    result = lens_project.run(f"--lens-models={MODEL}", "--lens-prompts=suites/mine.toml")
    result.assert_outcomes(errors=len(GENERATED))  # the shared run fails once, in setup
    result.stdout.fnmatch_lines(
        [
            f"*{path}: prompt 'capital-it': prompt is 200 tokens long but {MODEL} has a context "
            "of 128 tokens; shorten the prompt*"
        ]
    )
