"""Prompt suites: the prompts a lens run reads, from a TOML file or the built-in default.

A suite file holds ``[[prompts]]`` tables::

    name = "capitals"                       # optional: the suite's name (default: file stem)

    [[prompts]]
    id = "capital-fr"                       # slug, unique in the file
    prompt = "The capital of France is called simply"
    answer = "Paris"                        # ground truth for is_answer / L_semantic
    probes = ["Paris is the capital of"]    # optional next-token probe prompts
    control_for = "capital-de"              # optional: this prompt is that prompt's control

A control prompt's next-token rows carry ``control_margin`` (P_L[its own answer] -
P_L[the controlled prompt's answer]); ``control_for`` must name another prompt of the
suite that is not itself a control.

The built-in :data:`DEFAULT_SUITE` is the original pipeline's experiment (one prompt, its
answer and its 14 probes); its runs keep the original's file names. Every error names the
file, the entry and what was expected.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lenscheck.prompts import CONTEXT_PROMPT, GROUND_TRUTH, TEST_PROMPTS

__all__ = [
    "DEFAULT_SUITE",
    "DEFAULT_SUITE_NAME",
    "ONE_OFF_ID",
    "PromptCase",
    "PromptSuite",
    "SuiteError",
    "check_controls",
    "load_suite",
]

DEFAULT_SUITE_NAME = "default"
#: The id of the prompt given on the command line with ``--prompt``/``--answer``.
ONE_OFF_ID = "custom"
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]*")
_ENTRY_KEYS = ("id", "prompt", "answer", "probes", "control_for")
_TOP_KEYS = ("name", "description", "prompts")
_SHAPE = (
    "expected [[prompts]] tables with id (a slug like 'capital-fr'), prompt, answer and "
    "optional probes (a list of strings) and control_for (another prompt's id)"
)
_CONTROL_LINE = re.compile(r"^\s*control_for\s*=", re.MULTILINE)


class SuiteError(ValueError):
    """A prompt suite lenscheck cannot use; the message names the file and the entry."""


@dataclass(frozen=True)
class PromptCase:
    """One prompt of a suite: the text the lens reads, its answer and its probe prompts."""

    id: str
    prompt: str
    answer: str
    probes: tuple[str, ...] = ()
    #: The id of the prompt this one is the control of (None: not a control).
    control_for: str | None = None

    @property
    def digest(self) -> str:
        """SHA-256 of the prompt, answer and probes: a golden entry remembers what it pinned
        (a control's ``control_for`` is pinned by its ``control_summary``)."""
        text = json.dumps([self.prompt, self.answer, list(self.probes)], ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_controls(
    cases: tuple[PromptCase, ...], source: str, lines: list[int] | None = None
) -> None:
    """Each ``control_for`` names another prompt of the suite that is not a control itself
    (a control of a control would compare two controls: which answer is the baseline?).
    ``lines``: where each ``control_for`` is written (the message names the line)."""
    by_id = {c.id: c for c in cases}
    controls = [c for c in cases if c.control_for is not None]
    for n, case in enumerate(controls):
        line = f":{lines[n]}" if lines is not None and n < len(lines) else ""
        where = f"{source}{line}: prompt {case.id!r}: control_for {case.control_for!r}"
        target = by_id.get(str(case.control_for))
        if target is None:
            raise SuiteError(
                f"{where} names no prompt of the suite; expected one of "
                f"{', '.join(map(repr, by_id))} (fix or remove control_for)"
            )
        if target.id == case.id:
            raise SuiteError(f"{where}: a prompt cannot be its own control; name another prompt")
        if target.control_for is not None:
            raise SuiteError(
                f"{where} is itself the control of {target.control_for!r}; a control controls "
                "a prompt that is not a control: name that one"
            )


@dataclass(frozen=True)
class PromptSuite:
    """An ordered set of prompt cases with unique ids; ``source`` is where it came from."""

    name: str
    cases: tuple[PromptCase, ...]
    source: str = "<built-in>"
    builtin: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not self.cases:
            raise SuiteError(f"{self.source}: the suite has no prompts; {_SHAPE}")
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise SuiteError(
                    f"{self.source}: prompt id {case.id!r} appears twice; ids are unique"
                )
            seen.add(case.id)
        check_controls(self.cases, self.source)

    def control_of(self, case: PromptCase) -> PromptCase | None:
        """The prompt ``case`` is the control of (None: ``case`` is not a control)."""
        if case.control_for is None:
            return None
        return next(c for c in self.cases if c.id == case.control_for)

    @property
    def is_default(self) -> bool:
        """The built-in default suite: its files keep the original pipeline's names."""
        return self.builtin and self.name == DEFAULT_SUITE_NAME

    def file_suffix(self, case: PromptCase) -> str:
        """``""`` for the default suite (``output-<name>.json``), else ``-<prompt id>``."""
        return "" if self.is_default else f"-{case.id}"

    def where(self, case: PromptCase) -> str:
        """Prefix of a message about ``case``: its file and id (nothing for a lone prompt)."""
        return "" if self.source.startswith("<") else f"{self.source}: prompt {case.id!r}: "

    def __iter__(self) -> Any:
        return iter(self.cases)

    def __len__(self) -> int:
        return len(self.cases)

    @classmethod
    def one_off(cls, prompt: str, answer: str, probes: Iterable[str] = ()) -> PromptSuite:
        """A suite of one prompt given on the command line (id ``custom``)."""
        source = "<one-off prompt>"
        case = _case(
            {"id": ONE_OFF_ID, "prompt": prompt, "answer": answer, "probes": list(probes)},
            source,
            1,
        )
        return cls(name=ONE_OFF_ID, cases=(case,), source=source)

    @classmethod
    def from_toml(cls, path: str | Path) -> PromptSuite:
        """Read and check a suite file (see the module docstring for its shape)."""
        return load_suite(path)


DEFAULT_SUITE = PromptSuite(
    name=DEFAULT_SUITE_NAME,
    cases=(PromptCase("capital-de", CONTEXT_PROMPT, GROUND_TRUTH, TEST_PROMPTS),),
    builtin=True,
)


def _toml_loads(text: str) -> dict[str, Any]:
    # Imported here: only a suite file needs a TOML parser (tomli, a third-party package, on
    # Python 3.10), and `import lenscheck` imports this module.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def load_suite(path: str | Path) -> PromptSuite:
    """Read the suite at ``path``; every problem raises :class:`SuiteError` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteError(
            f"{path}: cannot read the prompt suite ({exc.strerror or exc}); "
            "pass an existing TOML file with --prompts (pytest: --lens-prompts)"
        ) from None
    except UnicodeDecodeError:
        raise SuiteError(f"{path}: not TOML (not UTF-8 text); {_SHAPE}") from None
    try:
        data = _toml_loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise SuiteError(f"{path}: not TOML ({exc}); {_SHAPE}") from None
    return _suite(data, str(path), _slugify(path.stem), _control_lines(text))


def _control_lines(text: str) -> list[int]:
    """The 1-based line of each ``control_for =`` in the file, in order (the n-th belongs
    to the n-th prompt that has one: TOML keeps a table's keys where they are written)."""
    return [text.count("\n", 0, m.start()) + 1 for m in _CONTROL_LINE.finditer(text)]


def _known_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str, what: str) -> None:
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise SuiteError(
            f"{where}: unknown {what}(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(allowed)}"
        )


def _suite(
    data: Mapping[str, Any], source: str, stem: str, control_lines: list[int]
) -> PromptSuite:
    _known_keys(data, _TOP_KEYS, source, "top-level key")
    entries = data.get("prompts")
    if not isinstance(entries, list) or not entries:
        raise SuiteError(f"{source}: no [[prompts]] entries; {_SHAPE}")
    name = data.get("name", stem)
    if not isinstance(name, str) or not _SLUG.fullmatch(name):
        raise SuiteError(
            f"{source}: suite name {name!r} is not a slug; expected lower-case letters, "
            "digits and '-', starting with a letter or digit (it names the golden folder)"
        )
    cases = tuple(_case(entry, source, n) for n, entry in enumerate(entries, start=1))
    first: dict[str, int] = {}
    for n, case in enumerate(cases, start=1):
        if case.id in first:
            raise SuiteError(
                f"{source}: prompt #{n} (id {case.id!r}): prompt id {case.id!r} appears twice "
                f"(first in prompt #{first[case.id]}); ids are unique in a suite"
            )
        first[case.id] = n
    check_controls(cases, source, control_lines)  # before the suite's own check: the lines
    return PromptSuite(name=name, cases=cases, source=source)


def _case(entry: Any, source: str, n: int) -> PromptCase:
    where = f"{source}: prompt #{n}"
    if not isinstance(entry, dict):
        raise SuiteError(f"{where} is {type(entry).__name__}, not a table; {_SHAPE}")
    if isinstance(entry.get("id"), str):
        where += f" (id {entry['id']!r})"
    _known_keys(entry, _ENTRY_KEYS, where, "key")
    pid = entry.get("id")
    if not isinstance(pid, str) or not _SLUG.fullmatch(pid):
        raise SuiteError(
            f"{where}: id {pid!r} is not a slug; expected lower-case letters, digits and "
            "'-', starting with a letter or digit, e.g. 'capital-fr'"
        )
    prompt, answer = entry.get("prompt"), entry.get("answer")
    for key, value, example in (
        ("prompt", prompt, "the text the lens reads"),
        ("answer", answer, "the token the model should predict next, e.g. 'Paris'"),
    ):
        if not isinstance(value, str) or not value.strip():
            raise SuiteError(f"{where}: {key} is missing or empty; expected {example}")
    probes = entry.get("probes", [])
    if not isinstance(probes, list) or not all(isinstance(p, str) and p.strip() for p in probes):
        raise SuiteError(f"{where}: probes must be a list of non-empty strings, got {probes!r}")
    control = entry.get("control_for")
    if control is not None and (not isinstance(control, str) or not _SLUG.fullmatch(control)):
        raise SuiteError(
            f"{where}: control_for {control!r} is not a prompt id; expected the id (a slug) "
            "of the prompt this one is the control of"
        )
    return PromptCase(
        id=pid,
        prompt=str(prompt),
        answer=str(answer),
        probes=tuple(probes),
        control_for=control,
    )


def _slugify(stem: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")
    return slug or "suite"
