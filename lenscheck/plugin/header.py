"""The plugin's lines in pytest's report header: what runs where, and with which libraries.

A GPU gate that silently ran on the CPU would compare with CPU goldens and pass, so the
header says which class every model resolves to and, loudly, when ``auto`` found no GPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lenscheck._version import __version__
from lenscheck.backends.base import library_versions
from lenscheck.device import choose_dtype, parse_dtype, resolve_device, torch_sees
from lenscheck.golden.payload import golden_class
from lenscheck.plugin.gpus import assign_cuda_device

# torch is imported inside header_lines: `import lenscheck.plugin` imports this module and
# must stay free of torch.
if TYPE_CHECKING:
    import pytest

    from lenscheck.plugin.settings import LensSettings

__all__ = ["header_lines", "resolved_class"]


def resolved_class(settings: LensSettings, spec: str, device: str) -> str:
    """The golden class a model runs in: ``cuda-bfloat16`` and friends."""
    dtype = parse_dtype(settings.dtype) or choose_dtype(device, spec)
    return golden_class(device, str(dtype))


def _workers(config: pytest.Config) -> int:
    count = getattr(config.option, "numprocesses", None)
    return count if isinstance(count, int) and count > 0 else 0


def header_lines(settings: LensSettings, config: pytest.Config) -> list[str]:
    """Settings, classes per model, the GPU of each xdist worker, and library versions."""
    device = resolve_device(settings.device, "--lens-device")
    cfg = settings.config
    trust = " trust_remote_code=on" if cfg.trust_remote_code else ""
    suite = settings.suite
    lines = [
        f"lenscheck: models={','.join(settings.models)} device={settings.device} "
        f"dtype={settings.dtype} backend={settings.backend} suite={suite.name} "
        f"({len(suite)} prompt{'s' if len(suite) != 1 else ''}) "
        f"preset={cfg.preset} decode_norm={cfg.decode_norm} bos={cfg.bos} schema={cfg.schema}"
        f"{' chat_template=on' if cfg.chat_template else ''} lenses={','.join(cfg.lenses)} "
        f"golden={settings.golden_dir}{trust}",
        "lenscheck: classes: "
        + ", ".join(
            f"{e.key} {resolved_class(settings, e.spec, device)}" for e in settings.entries
        ),
    ]
    workers = _workers(config)
    if device == "cuda" and workers:
        import torch

        count = torch.cuda.device_count()
        lines.append(
            "lenscheck: workers: "
            + ", ".join(f"gw{k} {assign_cuda_device(f'gw{k}', count)}" for k in range(workers))
        )
    versions = library_versions("torch", "transformers", "transformer-lens", "syrupy")
    lines.append(
        f"lenscheck: versions: lenscheck {__version__}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    if settings.device == "auto" and device == "cpu":
        lines.append(
            "lenscheck: WARNING: --lens-device=auto found no GPU, the lens runs on the CPU "
            f"and compares with CPU goldens ({torch_sees()}); pass --lens-device=cuda to "
            "make a missing GPU an error"
        )
    return lines
