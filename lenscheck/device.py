"""Device choice and the dtype policy (cuda fp16, Gemma bf16, mps fp16, cpu fp32)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from lenscheck.vocab import DEVICES, DTYPE_ALIASES

# torch is imported inside the functions that need it: `import lenscheck` imports this
# module and must stay free of torch.
if TYPE_CHECKING:
    import torch

__all__ = [
    "DEVICES",
    "DeviceUnavailableError",
    "choose_dtype",
    "cpu_kernels",
    "parse_dtype",
    "resolve_device",
    "should_auto_promote_unembed",
    "torch_sees",
]

log = logging.getLogger(__name__)


def cpu_kernels() -> str:
    """The instruction set torch's CPU kernels run with here (``AVX512``, ``AVX2``,
    ``DEFAULT``...): float32 results differ in their last bits between two of them, so a
    golden records it (lenscheck.golden.tolerances.tolerances_for)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def _check_device(device: str) -> str:
    if not isinstance(device, str) or device.split(":")[0] not in DEVICES[1:]:
        raise ValueError(
            f"device must be one of 'cuda', 'mps', 'cpu' (optionally 'cuda:N'), got {device!r}"
        )
    return device.split(":")[0]


def choose_dtype(device: str, model_id: str) -> torch.dtype:
    """The compute dtype for ``model_id`` on ``device``.

    cuda: fp16, except Gemma (published in bf16; fp16 overflows its activations);
    mps: fp16 (large fp32 buffers crash MPS); cpu: fp32.
    """
    import torch

    kind = _check_device(device)
    if kind == "cpu":
        return torch.float32
    if kind == "cuda" and "gemma" in model_id.lower():
        return torch.bfloat16
    return torch.float16


def should_auto_promote_unembed(compute_dtype: torch.dtype) -> bool:
    """Promote the unembedding to fp32 automatically only when the model runs in fp32."""
    import torch

    return compute_dtype == torch.float32


def parse_dtype(text: str) -> torch.dtype | None:
    """``'auto'`` -> None; ``'float16'``/``'fp16'``/``'torch.bfloat16'``... -> a torch dtype."""
    import torch

    name = text.strip().removeprefix("torch.")
    if name == "auto":
        return None
    name = DTYPE_ALIASES.get(name, name)
    if name not in ("float32", "float16", "bfloat16", "float64"):
        raise ValueError(f"dtype must be auto, float32, float16 or bfloat16, got {text!r}")
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def _available(kind: str) -> bool:
    import torch

    if kind == "cuda":
        return bool(torch.cuda.is_available())
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return True


class DeviceUnavailableError(RuntimeError):
    """A device the user asked for explicitly is not there: never silently the CPU."""


def torch_sees() -> str:
    """What torch sees: its CUDA build, CUDA devices, CUDA_VISIBLE_DEVICES and MPS."""
    import torch

    cuda = torch.version.cuda or "none (a CPU-only build of torch)"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
    mps = "yes" if _available("mps") else "no"
    return (
        f"torch {torch.__version__} with CUDA {cuda}, {count} CUDA device(s) visible, "
        f"CUDA_VISIBLE_DEVICES={visible}, MPS available: {mps}"
    )


def resolve_device(requested: str, option: str = "--device") -> str:
    """``auto`` prefers cuda, then mps, then cpu; an explicit device must be available.

    A GPU run that silently fell back to the CPU would compare with CPU goldens and pass
    on the wrong hardware, so a missing device raises :class:`DeviceUnavailableError`
    naming what torch sees and ``option``, the flag that changes it.
    """
    if requested == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if _available(d))
    kind = _check_device(requested)
    index = requested.partition(":")[2]
    missing = not _available(kind)
    if not missing and kind == "cuda" and index:
        import torch

        missing = not index.isdigit() or int(index) >= torch.cuda.device_count()
    if missing:
        raise DeviceUnavailableError(
            f"device {requested!r} was requested but is not available here: {torch_sees()}. "
            f"Choose an available device with {option} (auto picks cuda, then mps, then cpu)"
        )
    return requested
