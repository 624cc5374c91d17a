"""Command-line options and ini settings of the plugin, parsed once into LensSettings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["LensSettings", "add_options", "read_settings"]

_OPTIONS = (
    # (option, ini name, default, help)
    (
        "--lens-models",
        "lens_models",
        "",
        "comma list of models for the lens golden tests: hub ids, local checkpoint dirs, "
        "'embedded', 'synthetic-*' or 'synthetic' for all synthetic families",
    ),
    ("--lens-device", "lens_device", "auto", "device for the lens runs: auto, cpu, cuda or mps"),
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
        "model library: transformers or transformer-lens",
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
)
_TRUST_HELP = (
    "run the Python code a model repository ships (transformers' trust_remote_code); "
    "off by default: read that code first"
)


def add_options(parser: pytest.Parser) -> None:
    """Register every option in a 'lenscheck' group, each with an ini equivalent."""
    group = parser.getgroup("lenscheck", "logit-lens golden tests")
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
class LensSettings:
    """The plugin's configuration after option/ini resolution and validation."""

    models: tuple[str, ...]
    device: str
    dtype: str
    backend: str
    golden_dir: Path
    device_map: str | None
    tolerance_overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    collapse_allowance: dict[str, int] = field(default_factory=dict)
    trust_remote_code: bool = False

    def allowance(self, model: str) -> int:
        """Collapse-layer allowance for ``model``."""
        return self.collapse_allowance.get(model, 0)


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


def _models(text: str) -> tuple[str, ...]:
    if not text:
        return ()
    from lenscheck.models import expand_model_list

    try:
        return tuple(expand_model_list(text))
    except ValueError as exc:
        raise pytest.UsageError(f"--lens-models: {exc}") from None


def read_settings(config: pytest.Config) -> LensSettings:
    """Resolve options over ini values; bad values raise pytest.UsageError."""
    from lenscheck.config import LensConfig
    from lenscheck.golden.tolerances import parse_overrides

    backend = _value(config, "lens_backend")
    device, dtype = _value(config, "lens_device"), _value(config, "lens_dtype")
    try:
        LensConfig(device=device, dtype=dtype, backend=backend)  # type: ignore[arg-type]
        overrides = parse_overrides(list(config.getini("lens_tolerances")))
    except ValueError as exc:
        # LensConfig's messages list the accepted values (backends, devices, dtypes) already.
        raise pytest.UsageError(f"lenscheck: {exc}") from None
    golden = Path(_value(config, "lens_golden_dir"))
    return LensSettings(
        models=_models(_value(config, "lens_models")),
        device=device,
        dtype=dtype,
        backend=backend,
        golden_dir=golden if golden.is_absolute() else Path(config.rootpath) / golden,
        device_map=_value(config, "lens_device_map") or None,
        tolerance_overrides=overrides,
        collapse_allowance=_allowances(list(config.getini("lens_collapse_allowance"))),
        trust_remote_code=bool(
            config.getoption("lens_trust_remote_code") or config.getini("lens_trust_remote_code")
        ),
    )
