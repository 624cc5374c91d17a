"""Torch threads per xdist worker (the test suite's conftest applies it at configure)."""

from __future__ import annotations

import os
import sys

__all__ = ["share_cores_between_workers", "worker_threads"]


def worker_threads(cpus: int | None, workers: int) -> int:
    """Intra-op threads per xdist worker so that workers x threads fit the cores."""
    return max(1, (cpus or 1) // max(workers, 1))


def share_cores_between_workers() -> None:
    # Each torch process spins up one thread per core; `-n 2` on 2 cores then runs four
    # busy-waiting threads on two cores, and the gate took 3x longer (113 s vs 35 s).
    # Child interpreters (subprocess sessions) inherit the environment; an explicit
    # OMP_NUM_THREADS wins.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    threads = os.environ.setdefault("OMP_NUM_THREADS", str(worker_threads(os.cpu_count(), workers)))
    os.environ.setdefault("MKL_NUM_THREADS", threads)
    if "torch" in sys.modules:  # imported already (by another plugin): too late for the env
        sys.modules["torch"].set_num_threads(int(threads))
