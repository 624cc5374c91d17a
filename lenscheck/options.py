"""Every front end of the run options declared on :class:`~lenscheck.config.LensConfig`.

The CLI's arguments, the plugin's options and ini keys, the argv of the CLI's per-model
subprocesses and the plugin's re-bless command are generated here from those declarations,
and read back into a :class:`LensConfig` by one function, :func:`config_from_values`. A
*values* mapping holds what the user gave, by field name, as typed (a bool for flags): an
option left out takes the field's default. Standard library only (pytest is handed in).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lenscheck.config import LensConfig, Option, OptionError, run_options

if TYPE_CHECKING:
    import pytest

__all__ = [
    "add_cli_arguments",
    "add_pytest_options",
    "cli_argv",
    "cli_values",
    "config_from_values",
    "default_text",
    "golden_options",
    "plugin_options",
    "pytest_argv",
    "pytest_values",
    "shell_command",
]


def plugin_options() -> tuple[Option, ...]:
    """The run options the plugin offers (``--lens-*`` and ``lens_*`` ini keys)."""
    return tuple(o for o in run_options() if o.plugin)


def golden_options() -> tuple[Option, ...]:
    """The options that select or shape what a golden pins: a re-bless command carries them."""
    return tuple(o for o in run_options() if o.golden and o.plugin)


def default_text(opt: Option) -> str:
    """An option's default as the help and the docs say it."""
    if opt.preset:
        from lenscheck.config import PRESET_SETTINGS

        by = ", ".join(f"{v[opt.name]} under {p}" for p, v in PRESET_SETTINGS.items())
        return f"the preset's: {by}"
    default = next(f.default for f in _fields() if f.name == opt.name)
    if opt.kind == "flag":
        return "on" if bool(default) != opt.inverted else "off"
    if default is None:
        return "the built-in prompt" if opt.kind == "suite" else "none"
    return ",".join(default) if isinstance(default, tuple) else str(default)


def _fields() -> Iterable[Any]:
    from dataclasses import fields

    return fields(LensConfig)


def _help(opt: Option) -> str:
    if opt.kind == "flag":
        return opt.help
    return f"{opt.help} (default: {default_text(opt)})"


def _metavar(opt: Option) -> str | None:
    if opt.metavar or not (opt.choices or opt.kind == "unit"):
        return opt.metavar
    return "P" if opt.kind == "unit" else "{" + ",".join(opt.choices) + "}"


def _argparse_type(opt: Option) -> Any:
    """A type= that checks the text and keeps it as typed (parsing happens once, later)."""

    def check(text: str) -> str:
        if opt.kind in ("choice", "unit"):
            try:
                opt.parse(text)
            except OptionError as exc:
                raise argparse.ArgumentTypeError(exc.detail) from None
        return text

    check.__name__ = opt.name  # argparse names the type in "invalid <name> value" messages
    return check


# ------------------------------------------------------------------------------- the CLI


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every CLI run option to ``parser`` (``dest``: the field name, default None)."""
    for opt in run_options():
        if not opt.cli:
            continue
        if opt.kind == "flag":
            const = not opt.inverted
            parser.add_argument(
                opt.flag, dest=opt.name, action="store_const", const=const, help=opt.help
            )
        else:
            parser.add_argument(
                opt.flag,
                dest=opt.name,
                type=_argparse_type(opt),
                metavar=_metavar(opt),
                help=_help(opt),
            )


def cli_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """What the user gave on the command line, by field name."""
    return {
        o.name: getattr(namespace, o.name)
        for o in run_options()
        if o.cli and getattr(namespace, o.name, None) is not None
    }


def cli_argv(values: Mapping[str, Any]) -> list[str]:
    """``values`` as ``lenscheck run`` arguments: what a per-model subprocess is given."""
    argv: list[str] = []
    for opt in run_options():
        if not opt.cli or opt.name not in values:
            continue
        value = values[opt.name]
        if opt.kind == "flag":
            argv += [opt.flag] if bool(value) != opt.inverted else []
        else:
            argv += [opt.flag, str(value)]
    return argv


# ---------------------------------------------------------------------------- the plugin


def add_pytest_options(parser: pytest.Parser, group: Any) -> None:
    """Register every plugin run option in ``group``, each with its ini twin."""
    for opt in plugin_options():
        if opt.kind == "flag":
            group.addoption(
                opt.pytest_flag,
                dest=opt.ini,
                action="store_true",
                default=None,
                help=f"{opt.help} (ini: {opt.ini})",
            )
            parser.addini(opt.ini, type="bool", default=False, help=opt.help)
        else:
            group.addoption(
                opt.pytest_flag,
                dest=opt.ini,
                default=None,
                metavar=_metavar(opt),
                help=f"{_help(opt)} (ini: {opt.ini})",
            )
            parser.addini(opt.ini, default="", help=opt.help)


def pytest_values(config: pytest.Config) -> dict[str, Any]:
    """What the user gave, the command line over the ini file, by field name."""
    out: dict[str, Any] = {}
    for opt in plugin_options():
        cli = config.getoption(opt.ini)
        value = cli if cli is not None else config.getini(opt.ini)
        if opt.kind == "flag":
            if value:
                out[opt.name] = True
        elif str(value).strip():
            out[opt.name] = str(value).strip()
    return out


def pytest_argv(values: Mapping[str, Any], options: Iterable[Option]) -> list[str]:
    """``values`` of ``options`` as plugin arguments (``--lens-dtype=float16``)."""
    argv = []
    for opt in options:
        if opt.name not in values:
            continue
        value = values[opt.name]
        if opt.kind == "flag":
            argv += [opt.pytest_flag] if value else []
        else:
            argv.append(f"{opt.pytest_flag}={value}")
    return argv


def shell_command(argv: Iterable[str]) -> str:
    """A command line a POSIX shell reads back as ``argv`` (values with spaces quoted)."""
    return " ".join(shlex.quote(a) for a in argv)


# ------------------------------------------------------------------------------ reading


def config_from_values(
    values: Mapping[str, Any], *, base: Path | None = None, **fixed: Any
) -> LensConfig:
    """The :class:`LensConfig` of ``values`` (``base``: where relative suite paths start);
    ``fixed``: fields the caller sets itself. Raises :class:`OptionError` naming the option."""
    by_name = {o.name: o for o in run_options()}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise ValueError(f"unknown run option(s) {', '.join(unknown)}; expected {list(by_name)}")
    parsed = {name: by_name[name].parse(text, base) for name, text in values.items()}
    return LensConfig(**{**parsed, **fixed})
