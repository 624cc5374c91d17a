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
    "optional probes (a list of strings) and control_for (another prompt's id)"
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
    assert suite.name == "capitals" and len(suite) == 9
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
        "answer, probes, control_for"
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


CONTROL = (
    GOOD
    + """
[[prompts]]
id = "capital-fr-control"
prompt = "The capital of Italy is called simply, in French"
answer = "Rome"
control_for = "{target}"
"""
)


def test_a_control_prompt_names_the_prompt_it_controls() -> None:
    suite = PromptSuite(
        "s",
        (
            PromptCase("a", "The capital of France is", "Paris"),
            PromptCase("b", "The capital of Italy is", "Rome", control_for="a"),
        ),
    )
    a, b = suite.cases
    assert suite.control_of(b) == a and suite.control_of(a) is None
    # The digest is the golden's prompt key: prompt, answer and probes, as before.
    assert b.digest == PromptCase("b", b.prompt, b.answer).digest


def test_control_for_is_read_from_a_suite_file(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, CONTROL.format(target="capital-fr")))
    assert [c.control_for for c in suite] == [None, None, "capital-fr"]
    example = load_suite(EXAMPLE)
    (control,) = [c for c in example if c.control_for is not None]
    assert (control.id, control.control_for, control.answer) == (
        "hauptstadt-fr-control",
        "hauptstadt-de",
        "Paris",
    )


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("nope", "names no prompt of the suite; expected one of 'capital-fr', 'capital-it'"),
        ("capital-fr-control", "a prompt cannot be its own control"),
    ],
)
def test_control_for_errors_name_the_file_and_line(tmp_path: Path, target: str, words: str) -> None:
    path = write(tmp_path, CONTROL.format(target=target))
    line = CONTROL.splitlines().index('control_for = "{target}"') + 1
    message = error(path)
    assert message.startswith(f"{path}:{line}: prompt 'capital-fr-control': ")
    assert f"control_for {target!r}" in message and words in message


def test_a_control_of_a_control_is_refused_at_its_line(tmp_path: Path) -> None:
    text = (
        CONTROL.format(target="capital-fr")
        + """
[[prompts]]
id = "second-control"
prompt = "The capital of Spain is called simply"
answer = "Madrid"
control_for = "capital-fr-control"
"""
    )
    path = write(tmp_path, text)
    line = text.splitlines().index('control_for = "capital-fr-control"') + 1
    message = error(path)
    assert message.startswith(f"{path}:{line}: prompt 'second-control': ")
    assert "is itself the control of 'capital-fr'" in message


def test_control_for_must_be_an_id(tmp_path: Path) -> None:
    path = write(tmp_path, CONTROL.replace('"{target}"', "3"))
    assert "control_for 3 is not a prompt id" in error(path)
    with pytest.raises(SuiteError, match="names no prompt of the suite"):
        PromptSuite("s", (PromptCase("a", "p", "x", control_for="zz"),))
