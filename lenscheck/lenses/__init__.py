"""Lens kinds and the registry that turns a spec string into a lens.

A spec is ``KIND`` or ``KIND=ARG``: ``logit`` (the logit lens at the run's decoding point,
the default) or ``tuned=PATH`` (a tuned-lens checkpoint folder). The pipeline runs every
lens of ``LensConfig.lenses`` on the same forward passes; each writes its own files, the
logit lens under today's names, any other with ``-KIND`` appended to each file's kind.

Adding a kind: one module with a :class:`Lens` subclass (its ``kind``, ``argument``,
``open``/``bind`` constructors, ``facts`` and ``prepare_layer``/``prepare``), and one entry in
:data:`LENS_KINDS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lenscheck.lenses.base import Lens, LensSpecError
from lenscheck.lenses.logit import LogitLens
from lenscheck.lenses.tuned import TunedLens

if TYPE_CHECKING:
    from lenscheck.backends.base import LensBackend
    from lenscheck.config import LensConfig

__all__ = [
    "DEFAULT_LENSES",
    "LENS_KINDS",
    "Lens",
    "LensSpec",
    "LensSpecError",
    "LogitLens",
    "OpenedLens",
    "TunedLens",
    "bind_lenses",
    "open_lenses",
    "parse_lens_spec",
    "parse_lens_specs",
]

#: kind name -> its class. One entry per kind.
LENS_KINDS: dict[str, type[Lens]] = {cls.kind: cls for cls in (LogitLens, TunedLens)}
DEFAULT_LENSES: tuple[str, ...] = ("logit",)


@dataclass(frozen=True)
class LensSpec:
    """A parsed spec: its kind and the kind's argument (None for a kind that takes none)."""

    kind: str
    arg: str | None
    text: str

    @property
    def cls(self) -> type[Lens]:
        return LENS_KINDS[self.kind]

    @property
    def name(self) -> str:
        """The lens' name in results and goldens (its kind: one lens per kind a run)."""
        return self.kind

    @property
    def suffix(self) -> str:
        """What its file names add to each file's kind: none for the logit lens (today's
        names), ``-tuned`` for the tuned lens (``-records-tuned.csv``)."""
        return "" if self.kind == "logit" else f"-{self.kind}"


def parse_lens_spec(text: str) -> LensSpec:
    """``KIND`` or ``KIND=ARG`` -> :class:`LensSpec`; refuses an unknown kind or argument."""
    if not isinstance(text, str):
        raise LensSpecError(f"a lens spec is a string like 'logit' or 'tuned=PATH', got {text!r}")
    kind, sep, arg = text.strip().partition("=")
    kind = kind.strip()
    if kind not in LENS_KINDS:
        raise LensSpecError(
            f"unknown lens {kind!r} in {text!r}; expected one of "
            + ", ".join(_usage(cls) for cls in LENS_KINDS.values())
        )
    value = arg.strip() if sep else None
    LENS_KINDS[kind].check_argument(value)
    return LensSpec(kind, value, text)


def _usage(cls: type[Lens]) -> str:
    return cls.kind if cls.argument is None else f"{cls.kind}={cls.argument}"


def parse_lens_specs(texts: Iterable[str]) -> tuple[LensSpec, ...]:
    """Every spec of a run: at least one, and one lens per kind (each writes files named
    after its kind)."""
    specs = tuple(parse_lens_spec(t) for t in texts)
    if not specs:
        raise LensSpecError("no lens given; expected at least one, e.g. 'logit'")
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.name in seen:
            raise LensSpecError(
                f"two {spec.name} lenses ({seen[spec.name]!r} and {spec.text!r}); a run reads "
                "one lens of each kind, whose files carry its name"
            )
        seen[spec.name] = spec.text
    return specs


@dataclass(frozen=True)
class OpenedLens:
    """A spec whose files were read and checked, ready to bind to a model."""

    spec: LensSpec
    opened: Any

    def bind(self, backend: LensBackend, cfg: LensConfig) -> Lens:
        return self.spec.cls.bind(backend, cfg, self.spec.arg, self.opened)


def open_lenses(texts: Sequence[str]) -> list[OpenedLens]:
    """Parse every spec and read what it names (before any model loads): a missing or
    corrupt checkpoint is refused here."""
    return [OpenedLens(spec, spec.cls.open(spec.arg)) for spec in parse_lens_specs(texts)]


def bind_lenses(opened: Sequence[OpenedLens], backend: LensBackend, cfg: LensConfig) -> list[Lens]:
    """Every opened lens bound to ``backend``: one that does not fit the model is refused."""
    return [o.bind(backend, cfg) for o in opened]
