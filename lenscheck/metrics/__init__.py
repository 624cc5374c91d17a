"""The measurements lenscheck writes, declared once (lenscheck.metrics.table), their pure
functions (lenscheck.metrics.functions), the extended next-token computation
(lenscheck.metrics.nexttoken) and the sidecar files (lenscheck.metrics.files).

Read a run's extended files back with :func:`read_sidecar` (the sidecars) and
:func:`lenscheck.schema.read_csv` (the pure CSV: each row's ``extra`` holds the extended
columns, parsed as declared).
"""

from lenscheck.metrics.files import SidecarTable, parse_sidecar_bytes, read_sidecar
from lenscheck.metrics.table import METRICS, Metric, columns, declared, metric, tolerance_of

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
