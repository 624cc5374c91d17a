"""Golden files: extract what a run should keep doing, compare with tolerances, report drift.

Importing this package is cheap (no torch); the syrupy extension lives in
``lenscheck.golden.extension`` and is imported by the plugin when needed.
"""

from __future__ import annotations

from lenscheck.golden.compare import Drift, DriftReport, compare_golden
from lenscheck.golden.payload import FORMAT_VERSION, golden_class, golden_payload, model_dir_name
from lenscheck.golden.report import rebless_command, render_report
from lenscheck.golden.store import (
    GoldenFormatError,
    dumps_golden,
    find_golden,
    loads_golden,
    read_golden,
)
from lenscheck.golden.tolerances import (
    DEFAULT_TOLERANCES,
    Tolerances,
    parse_overrides,
    tolerances_for,
)

__all__ = [
    "DEFAULT_TOLERANCES",
    "FORMAT_VERSION",
    "Drift",
    "DriftReport",
    "GoldenFormatError",
    "Tolerances",
    "compare_golden",
    "dumps_golden",
    "find_golden",
    "golden_class",
    "golden_payload",
    "loads_golden",
    "model_dir_name",
    "parse_overrides",
    "read_golden",
    "rebless_command",
    "render_report",
    "tolerances_for",
]
