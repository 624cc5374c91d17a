"""The measurements lenscheck writes, declared once (lenscheck.metrics.table), their pure
functions (lenscheck.metrics.functions), the extended next-token computation
(lenscheck.metrics.nexttoken) and the sidecar files (lenscheck.metrics.files).

Read a run's extended files back with :func:`read_sidecar` (the sidecars) and
:func:`lenscheck.schema.read_csv` (the pure CSV: each row's ``extra`` holds the extended
columns, parsed as declared).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lenscheck.metrics.table import METRICS, Metric, columns, declared, metric, tolerance_of

if TYPE_CHECKING:
    from lenscheck.metrics.files import SidecarTable, parse_sidecar_bytes, read_sidecar

__all__ = [
    "METRICS",
    "Metric",
    "SidecarTable",
    "columns",
    "declared",
    "metric",
    "parse_sidecar_bytes",
    "read_sidecar",
    "tolerance_of",
]

_FILES = ("SidecarTable", "parse_sidecar_bytes", "read_sidecar")


def __getattr__(name: str) -> Any:
    # The sidecar readers load on first use: lenscheck.schema, which they build on, reads
    # the table at import (its headers), and importing them here would be a cycle.
    if name in _FILES:
        from lenscheck.metrics import files

        return getattr(files, name)
    raise AttributeError(f"module 'lenscheck.metrics' has no attribute {name!r}")
