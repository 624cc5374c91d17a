"""lenscheck.suites: prompt suite files, the built-in default, and every error's words."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lenscheck.prompts import CONTEXT_PROMPT, GROUND_TRUTH, TEST_PROMPTS
from lenscheck.suites import (
    DEFAULT_SUITE,
    ONE_OFF_ID,
    PromptCase,
    PromptSuite,
    SuiteError,
    load_suite,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "prompts" / "capitals.toml"
SHAPE = (
    "expected [[prompts]] tables with id (a slug like 'capital-fr'), prompt, answer and "
    "optional probes (a list of strings)"
)
GOOD = """
name = "mine"
description = "two capitals"

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


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error(path: Path) -> str:
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_the_default_suite_is_the_originals_experiment() -> None:
    (case,) = DEFAULT_SUITE.cases
    assert (case.id, case.prompt, case.answer, case.probes) == (
        "capital-de",
        CONTEXT_PROMPT,
        GROUND_TRUTH,
        TEST_PROMPTS,
    )
    assert len(TEST_PROMPTS) == 14
    assert DEFAULT_SUITE.is_default and DEFAULT_SUITE.name == "default"
    assert DEFAULT_SUITE.file_suffix(case) == ""  # the original's file names
    assert DEFAULT_SUITE.where(case) == ""


def test_a_suite_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    suite = load_suite(path)
    assert suite.name == "mine" and suite.source == str(path)
    assert [c.id for c in suite] == ["capital-fr", "capital-it"]
    assert suite.cases[0].probes == ("Paris is the capital of",)
    assert suite.cases[1].probes == ()
    assert not suite.is_default
    assert suite.file_suffix(suite.cases[1]) == "-capital-it"
    assert suite.where(suite.cases[1]) == f"{path}: prompt 'capital-it': "
    assert PromptSuite.from_toml(path) == suite


def test_the_name_defaults_to_the_file_stem_as_a_slug(tmp_path: Path) -> None:
    text = GOOD.replace('name = "mine"\n', "")
    assert load_suite(write(tmp_path, text, "My_Capitals v2.toml")).name == "my-capitals-v2"


def test_the_example_suite(tmp_path: Path) -> None:
    suite = load_suite(EXAMPLE)
    assert suite.name == "capitals" and len(suite) == 8
    assert {c.answer for c in suite} >= {"Paris", "Berlin", "Madrid", "Tokyo"}


def test_one_off_prompt() -> None:
    suite = PromptSuite.one_off("The capital of France is", "Paris")
    (case,) = suite.cases
    assert (case.id, case.prompt, case.answer, case.probes) == (
        ONE_OFF_ID,
        "The capital of France is",
        "Paris",
        (),
    )
    assert suite.file_suffix(case) == "-custom" and suite.where(case) == ""


def test_digest_changes_with_text_answer_and_probes() -> None:
    case = PromptCase("a", "p", "x", ("q",))
    digests = {
        case.digest,
        PromptCase("a", "p2", "x", ("q",)).digest,
        PromptCase("a", "p", "y", ("q",)).digest,
        PromptCase("a", "p", "x", ()).digest,
    }
    assert len(digests) == 4
    assert PromptCase("other-id", "p", "x", ("q",)).digest == case.digest  # ids are names


@given(st.text(min_size=1), st.text(min_size=1), st.lists(st.text(min_size=1), max_size=3))
def test_digest_is_the_golden_payloads(prompt: str, answer: str, probes: list[str]) -> None:
    from lenscheck.golden.payload import prompt_digest

    case = PromptCase("x", prompt, answer, tuple(probes))
    assert case.digest == prompt_digest(prompt, answer, probes)
    assert len(case.digest) == 64


def test_not_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[[prompts]\nid = 'x'")
    message = error(path)
    assert message.startswith(f"{path}: not TOML (")
    assert message.endswith(f"); {SHAPE}")
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert error(binary) == f"{binary}: not TOML (not UTF-8 text); {SHAPE}"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert error(path) == (
        f"{path}: cannot read the prompt suite (No such file or directory); pass an existing "
        "TOML file with --prompts (pytest: --lens-prompts)"
    )


def test_no_prompts(tmp_path: Path) -> None:
    for text in ('name = "x"\n', "prompts = []\n", "prompts = 3\n"):
        path = write(tmp_path, text)
        assert error(path) == f"{path}: no [[prompts]] entries; {SHAPE}"


def test_duplicate_ids_name_both_entries(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('id = "capital-it"', 'id = "capital-fr"'))
    assert error(path) == (
        f"{path}: prompt #2 (id 'capital-fr'): prompt id 'capital-fr' appears twice "
        "(first in prompt #1); ids are unique in a suite"
    )
    with pytest.raises(SuiteError, match="prompt id 'a' appears twice; ids are unique"):
        PromptSuite("s", (PromptCase("a", "p", "x"), PromptCase("a", "q", "y")))


@pytest.mark.parametrize("bad", ["Capital IT", "-fr", "capital_fr", "", "Fr"])
def test_bad_slugs(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, GOOD.replace('id = "capital-it"', f'id = "{bad}"'))
    assert error(path) == (
        f"{path}: prompt #2 (id {bad!r}): id {bad!r} is not a slug; expected lower-case "
        "letters, digits and '-', starting with a letter or digit, e.g. 'capital-fr'"
    )


def test_bad_suite_name(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('name = "mine"', 'name = "My Suite"'))
    assert error(path) == (
        f"{path}: suite name 'My Suite' is not a slug; expected lower-case letters, digits "
        "and '-', starting with a letter or digit (it names the golden folder)"
    )


#: Not "expected the expected next token" (issue 26): the template adds the "expected".
ANSWER_MISSING = (
    "answer is missing or empty; expected the token the model should predict next, e.g. 'Paris'"
)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'answer = "Rome"',
            'answer = ""',
            ANSWER_MISSING,
        ),
        (
            'answer = "Rome"',
            "",
            ANSWER_MISSING,
        ),
        (
            'prompt = "The capital of Italy is called simply"',
            'prompt = "   "',
            "prompt is missing or empty; expected the text the lens reads",
        ),
        (
            'answer = "Rome"',
            "answer = 3",
            ANSWER_MISSING,
        ),
    ],
)
def test_empty_prompt_or_answer(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = write(tmp_path, GOOD.replace(old, new))
    assert error(path) == f"{path}: prompt #2 (id 'capital-it'): {expected}"


def test_unknown_keys(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('answer = "Rome"', 'answer = "Rome"\nexpected = "Rome"'))
    assert error(path) == (
        f"{path}: prompt #2 (id 'capital-it'): unknown key(s) 'expected'; allowed: id, prompt, "
        "answer, probes"
    )
    path = write(tmp_path, "version = 2\n" + GOOD)
    assert error(path) == (
        f"{path}: unknown top-level key(s) 'version'; allowed: name, description, prompts"
    )


def test_bad_probes(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('probes = ["Paris is the capital of"]', 'probes = [""]'))
    assert error(path) == (
        f"{path}: prompt #1 (id 'capital-fr'): probes must be a list of non-empty strings, got ['']"
    )


def test_an_entry_that_is_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, "prompts = [1]\n")
    assert error(path) == f"{path}: prompt #1 is int, not a table; {SHAPE}"
