"""Command-line options and ini settings of the plugin, parsed once into LensSettings.

Reading the settings imports nothing heavy: the prompt suite is parsed here (a bad file is
a usage error before collection), the device is checked only when models are configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from lenscheck.config import LensConfig
from lenscheck.golden.tolerances import parse_overrides
from lenscheck.suites import DEFAULT_SUITE, PromptSuite, SuiteError, load_suite

__all__ = ["LensSettings", "ModelEntry", "add_options", "read_settings"]

_OPTIONS = (
    # (option, ini name, default, help)
    (
        "--lens-models",
        "lens_models",
        "",
        "comma list of models for the lens golden tests: hub ids, local checkpoint dirs "
        "(NAME=PATH names one; a path inside the rootdir is named by that relative path), "
        "'embedded', 'synthetic-*' or 'synthetic' for all synthetic families",
    ),
    (
        "--lens-device",
        "lens_device",
        "auto",
        "device for the lens runs: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps; "
        "an explicit device that is not available stops the session",
    ),
    (
        "--lens-dtype",
        "lens_dtype",
        "auto",
        "compute dtype: auto (cuda fp16, Gemma bf16, mps fp16, cpu fp32) or a torch dtype",
    ),
    (
        "--lens-backend",
        "lens_backend",
        "transformers",
        "model library: transformers, transformer-lens or hooked-transformer",
    ),
    (
        "--lens-golden-dir",
        "lens_golden_dir",
        "golden",
        "directory of golden files, relative to the rootdir (default: golden)",
    ),
    (
        "--lens-device-map",
        "lens_device_map",
        "",
        "accelerate device_map for models larger than one GPU (e.g. auto)",
    ),
    (
        "--lens-prompts",
        "lens_prompts",
        "",
        "prompt suite (TOML, [[prompts]] with id, prompt, answer, probes), relative to the "
        "rootdir; default: the built-in suite (the original pipeline's prompt)",
    ),
    (
        "--lens-report",
        "lens_report",
        "",
        "append one JSON line per model to this file (relative to the rootdir): classes, "
        "drifts and the largest |delta| per section, for CI summaries",
    ),
    (
        "--lens-decode-norm",
        "lens_decode_norm",
        "next-ln1",
        "where the lens decodes each layer: next-ln1 (the norm the model applies next, the "
        "original's rule), final (the final norm at every layer) or raw (no norm)",
    ),
)
_TRUST_HELP = (
    "run the Python code a model repository ships (transformers' trust_remote_code); "
    "off by default: read that code first"
)


def add_options(parser: pytest.Parser) -> None:
    """Register every option in a 'lenscheck' group, each with an ini equivalent."""
    group = parser.getgroup("lenscheck", "lenscheck: logit-lens golden tests")
    for option, ini, default, text in _OPTIONS:
        group.addoption(option, dest=ini, default=None, help=f"{text} (ini: {ini})")
        parser.addini(ini, help=text, default=default)
    group.addoption(
        "--lens-trust-remote-code",
        dest="lens_trust_remote_code",
        action="store_true",
        default=None,
        help=f"{_TRUST_HELP} (ini: lens_trust_remote_code)",
    )
    parser.addini("lens_trust_remote_code", type="bool", default=False, help=_TRUST_HELP)
    parser.addini(
        "lens_tolerances",
        type="linelist",
        default=[],
        help="tolerance overrides, one line per class: 'cpu-float32 entropy=1e-3'",
    )
    parser.addini(
        "lens_collapse_allowance",
        type="linelist",
        default=[],
        help="per-model collapse-layer allowance, one 'MODEL=K' per line (default 0)",
    )


@dataclass(frozen=True)
class ModelEntry:
    """One model of ``--lens-models``: ``key`` names its golden folder and its tests,
    ``spec`` is what loads it (alias, hub id or checkpoint directory)."""

    key: str
    spec: str


@dataclass(frozen=True)
class LensSettings:
    """The plugin's configuration after option/ini resolution and validation."""

    entries: tuple[ModelEntry, ...]
    device: str
    dtype: str
    backend: str
    golden_dir: Path
    device_map: str | None
    tolerance_overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    collapse_allowance: dict[str, int] = field(default_factory=dict)
    trust_remote_code: bool = False
    suite: PromptSuite = DEFAULT_SUITE
    prompts_option: str = ""
    decode_norm: str = "next-ln1"
    #: Whether --lens-models was given on the command line (not only in an ini).
    asked_on_command_line: bool = False
    report_path: Path | None = None

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

    def class_options(self) -> dict[str, str]:
        """The options that chose the golden a run compares with, for re-bless commands."""
        return {
            "lens_device": self.device,
            "lens_dtype": self.dtype,
            "lens_backend": self.backend,
            "lens_prompts": self.prompts_option,
            "lens_decode_norm": self.decode_norm,
        }


def _value(config: pytest.Config, ini: str) -> str:
    cli = config.getoption(ini)
    return str(cli if cli is not None else config.getini(ini)).strip()


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
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise pytest.UsageError(f"--lens-models: two models share a name in {keys}")
    return tuple(entries)


def _suite(text: str, rootdir: Path) -> PromptSuite:
    if not text:
        return DEFAULT_SUITE
    path = Path(text)
    try:
        return load_suite(path if path.is_absolute() else rootdir / path)
    except SuiteError as exc:
        raise pytest.UsageError(f"--lens-prompts: {exc}") from None


def read_settings(config: pytest.Config) -> LensSettings:
    """Resolve options over ini values; bad values raise pytest.UsageError.

    Without models nothing is validated or read (no torch import, no suite file): the
    plugin stays out of a session that did not ask for it.
    """
    rootdir = Path(config.rootpath)
    entries = _entries(_value(config, "lens_models"), rootdir)
    backend = _value(config, "lens_backend")
    device, dtype = _value(config, "lens_device"), _value(config, "lens_dtype")
    decode_norm = _value(config, "lens_decode_norm")
    golden = Path(_value(config, "lens_golden_dir"))
    prompts = _value(config, "lens_prompts")
    report = _value(config, "lens_report")
    settings = LensSettings(
        entries=entries,
        device=device,
        dtype=dtype,
        backend=backend,
        golden_dir=golden if golden.is_absolute() else rootdir / golden,
        device_map=_value(config, "lens_device_map") or None,
        trust_remote_code=bool(
            config.getoption("lens_trust_remote_code") or config.getini("lens_trust_remote_code")
        ),
        prompts_option=prompts,
        decode_norm=decode_norm,
        asked_on_command_line=bool(config.getoption("lens_models")),
        report_path=None if not report else rootdir / report,
    )
    if not entries:
        return settings
    try:
        LensConfig(device=device, dtype=dtype, backend=backend, decode_norm=decode_norm)  # type: ignore[arg-type]
        overrides = parse_overrides(list(config.getini("lens_tolerances")))
    except ValueError as exc:
        # LensConfig's messages list the accepted values (backends, devices, dtypes) already.
        raise pytest.UsageError(f"lenscheck: {exc}") from None
    return replace(
        settings,
        tolerance_overrides=overrides,
        collapse_allowance=_allowances(list(config.getini("lens_collapse_allowance"))),
        suite=_suite(prompts, rootdir),
    )
