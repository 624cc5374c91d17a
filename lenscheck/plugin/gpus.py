"""Which GPU an xdist worker uses: worker gwN takes visible device N modulo the count."""

from __future__ import annotations

__all__ = ["assign_cuda_device", "worker_index"]


def worker_index(worker_id: str | None) -> int:
    """0 for the main process, N for ``gwN``."""
    if not worker_id or worker_id == "master":
        return 0
    digits = worker_id.removeprefix("gw")
    if digits == worker_id or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"unexpected xdist worker id {worker_id!r}; expected 'gwN'")
    return int(digits)


def assign_cuda_device(worker_id: str | None, device_count: int) -> str:
    """``cuda:K`` for this worker; plain ``cuda`` when there is at most one device."""
    if device_count <= 1:
        return "cuda"
    return f"cuda:{worker_index(worker_id) % device_count}"
