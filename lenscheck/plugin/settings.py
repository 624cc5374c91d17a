"""The plugin's settings, read once per session from its options and ini keys.

Read only when a lens option or ini key was given: the prompt suite is parsed here (a bad
file is a usage error before collection), the device is checked only when models are
configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lenscheck.config import LensConfig, OptionError
from lenscheck.options import (
    config_from_values,
    golden_options,
    plugin_options,
    pytest_argv,
    pytest_values,
)
from lenscheck.plugin.options import plugin_option

if TYPE_CHECKING:
    from lenscheck.suites import PromptSuite

__all__ = ["LensSettings", "ModelEntry", "read_settings"]


@dataclass(frozen=True)
class ModelEntry:
    """One model of ``--lens-models``: ``key`` names its golden folder and its tests,
    ``spec`` is what loads it (alias, hub id or checkpoint directory)."""

    key: str
    spec: str


@dataclass(frozen=True)
class LensSettings:
    """The plugin's configuration after option/ini resolution and validation.

    ``values``: the run options the user gave (command line over ini), as typed;
    ``config``: them as a :class:`LensConfig`, the one every model's run starts from.
    """

    entries: tuple[ModelEntry, ...] = ()
    config: LensConfig = field(default_factory=LensConfig)
    values: dict[str, Any] = field(default_factory=dict)
    golden_dir: Path = Path("golden")
    golden_dir_option: str = "golden"
    tolerance_overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    collapse_allowance: dict[str, int] = field(default_factory=dict)
    #: Whether --lens-models was given on the command line (not only in an ini).
    asked_on_command_line: bool = False
    report_path: Path | None = None
    details: bool = False

    @property
    def models(self) -> tuple[str, ...]:
        """The model keys, in the order given."""
        return tuple(e.key for e in self.entries)

    def spec(self, key: str) -> str:
        """What loads the model named ``key``."""
        return next(e.spec for e in self.entries if e.key == key)

    def allowance(self, model: str) -> int:
        """Collapse-layer allowance for ``model``."""
        return self.collapse_allowance.get(model, 0)

    @property
    def suite(self) -> PromptSuite:
        """The prompt suite every model runs."""
        return self.config.prompt_suite()

    @property
    def device(self) -> str:
        return self.config.device

    @property
    def dtype(self) -> str:
        return self.config.dtype

    @property
    def backend(self) -> str:
        return self.config.backend

    @property
    def decode_norm(self) -> str:
        return self.config.decode_norm

    def rebless_flags(self) -> list[str]:
        """The options that chose this run's goldens, as the plugin spells them."""
        flags = pytest_argv(self.values, golden_options())
        default_dir = plugin_option("golden_dir").default
        if self.golden_dir_option != default_dir:
            flags.append(f"{plugin_option('golden_dir').pytest_flag}={self.golden_dir_option}")
        return flags


def _value(config: pytest.Config, ini: str) -> Any:
    cli = config.getoption(ini)
    return cli if cli is not None else config.getini(ini)


def _allowances(lines: list[str]) -> dict[str, int]:
    out = {}
    for line in lines:
        model, sep, k = line.partition("=")
        if not sep or not k.strip().isdigit():
            raise pytest.UsageError(f"lens_collapse_allowance: expected 'MODEL=K', got {line!r}")
        out[model.strip()] = int(k)
    return out


def _entry(text: str, rootdir: Path) -> ModelEntry:
    """``NAME=PATH``, a path (keyed by its path relative to the rootdir), an alias or hub id.

    A golden must not depend on where the model lives: a checkpoint directory is keyed by
    its place in the project, and one outside the project needs a name.
    """
    name, sep, spec = text.partition("=")
    if sep:
        name, spec = name.strip(), spec.strip()
        if not name or not spec:
            raise pytest.UsageError(f"--lens-models: expected NAME=PATH, got {text!r}")
        return ModelEntry(name, spec)
    path = Path(text).expanduser()
    if not path.is_dir():
        return ModelEntry(text, text)
    try:
        relative = path.resolve().relative_to(rootdir.resolve())
    except ValueError:
        raise pytest.UsageError(
            f"--lens-models: checkpoint directory {text!r} is outside the rootdir "
            f"{rootdir}; a golden must not depend on where a model lives, so name it: "
            f"--lens-models=NAME={text} (or lens_models = NAME={text} in the ini)"
        ) from None
    return ModelEntry(relative.as_posix(), text)


def _entries(text: str, rootdir: Path) -> tuple[ModelEntry, ...]:
    if not text:
        return ()
    # Imported here: lenscheck.models imports the model cache (platformdirs, filelock), which
    # a session without lens models never needs.
    from lenscheck.models import expand_model_list

    try:
        specs = expand_model_list(text)
    except ValueError as exc:
        raise pytest.UsageError(f"--lens-models: {exc}") from None
    entries = [_entry(spec, rootdir) for spec in specs]
    _check_specs(entries)
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise pytest.UsageError(f"--lens-models: two models share a name in {keys}")
    return tuple(entries)


def _check_specs(entries: list[ModelEntry]) -> None:
    """A model this machine cannot load stops the session before collection, in one message
    (a mistyped alias, a missing folder, an unreachable hub id), not one error per test."""
    from lenscheck.models.resolve import ModelNotAvailable, check_model_spec

    for entry in entries:
        try:
            check_model_spec(entry.spec)
        except (ModelNotAvailable, ValueError) as exc:
            raise pytest.UsageError(f"--lens-models: {exc}") from None


def _option_error(exc: OptionError) -> pytest.UsageError:
    opt = next(o for o in plugin_options() if o.name == exc.name)
    return pytest.UsageError(f"lenscheck: {opt.pytest_flag} (ini: {opt.ini}): {exc.detail}")


def _config(config: pytest.Config, values: dict[str, Any], rootdir: Path) -> LensConfig:
    from lenscheck.suites import SuiteError

    try:
        # The plugin draws no heatmap and keeps no residuals: it writes no output files.
        return config_from_values(values, base=rootdir, heatmap=False)
    except OptionError as exc:
        raise _option_error(exc) from None
    except SuiteError as exc:
        raise pytest.UsageError(f"--lens-prompts: {exc}") from None
    except ValueError as exc:
        # LensConfig's messages list the accepted values (backends, devices, dtypes) already.
        raise pytest.UsageError(f"lenscheck: {exc}") from None


def read_settings(config: pytest.Config) -> LensSettings:
    """Resolve options over ini values; bad values raise pytest.UsageError.

    Without models nothing else is validated or read (no torch import, no suite file): the
    plugin stays out of a session that did not ask for it.
    """
    rootdir = Path(config.rootpath)
    entries = _entries(str(_value(config, "lens_models")).strip(), rootdir)
    golden = str(_value(config, "lens_golden_dir")).strip() or "golden"
    report = str(_value(config, "lens_report")).strip()
    settings = LensSettings(
        entries=entries,
        golden_dir=Path(golden) if Path(golden).is_absolute() else rootdir / golden,
        golden_dir_option=golden,
        asked_on_command_line=bool(config.getoption("lens_models")),
        report_path=None if not report else rootdir / report,
        details=bool(_value(config, "lens_details")),
    )
    if not entries:
        return settings
    from lenscheck.golden.tolerances import parse_overrides

    values = pytest_values(config)
    try:
        overrides = parse_overrides(list(config.getini("lens_tolerances")))
    except ValueError as exc:
        raise pytest.UsageError(f"lenscheck: {exc}") from None
    return LensSettings(
        entries=entries,
        config=_config(config, values, rootdir),
        values=values,
        golden_dir=settings.golden_dir,
        golden_dir_option=golden,
        tolerance_overrides=overrides,
        collapse_allowance=_allowances(list(config.getini("lens_collapse_allowance"))),
        asked_on_command_line=settings.asked_on_command_line,
        report_path=settings.report_path,
        details=settings.details,
    )
