"""The extended schema's sidecar CSVs: their bytes and a public reader.

``output-<name>-pure-next-token-rawlens.csv``: one row per layer, the raw lens against
the lens (columns: lenscheck.metrics.table, file ``rawlens``).
``output-<name>-milestones.csv``: one row per milestone, ``milestone,layer,k`` (``k``:
the soft copy's window, on its row only). Both are in the lens dialect
(lenscheck.schema), empty cells where a value does not apply.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lenscheck.metrics.table import MILESTONES_COLUMNS, columns, declared, metric
from lenscheck.schema import (
    CsvSchemaError,
    SchemaViolation,
    dump_rows_bytes,
    parse_cell,
)

__all__ = [
    "SidecarKind",
    "SidecarTable",
    "dump_milestones_bytes",
    "dump_rawlens_bytes",
    "milestone_rows",
    "parse_sidecar_bytes",
    "read_sidecar",
]

SidecarKind = Literal["rawlens", "milestones"]


def dump_rawlens_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The rawlens sidecar of one prompt: its declared columns, one row per layer."""
    header = columns("rawlens")
    return dump_rows_bytes(header, ([row[c] for c in header] for row in rows))


def milestone_rows(milestones: Mapping[str, Any]) -> list[list[Any]]:
    """The milestones as the CSV's rows: [name, layer, k]; ``L_copy_soft_k`` rides on the
    ``L_copy_soft`` row."""
    rows = []
    for m in declared("milestones"):
        if m.name == "L_copy_soft_k":
            continue
        k = milestones.get("L_copy_soft_k") if m.name == "L_copy_soft" else None
        rows.append([m.name, milestones.get(m.name), k])
    return rows


def dump_milestones_bytes(milestones: Mapping[str, Any]) -> bytes:
    """The milestones sidecar of one prompt."""
    return dump_rows_bytes(MILESTONES_COLUMNS, milestone_rows(milestones))


@dataclass
class SidecarTable:
    """A parsed sidecar: its rows as dicts of parsed values (rawlens: by column; the
    milestones: one dict name -> layer, plus ``L_copy_soft_k``)."""

    path: str
    kind: SidecarKind
    header: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    violations: list[SchemaViolation] = field(default_factory=list)

    def milestones(self) -> dict[str, Any]:
        """The milestones file as {name: layer, ..., "L_copy_soft_k": k}."""
        out: dict[str, Any] = {}
        for row in self.rows:
            out[row["milestone"]] = row["layer"]
            if row["milestone"] == "L_copy_soft":
                out["L_copy_soft_k"] = row["k"]
        return out


def _kind_of(header: list[str]) -> SidecarKind | None:
    if tuple(header) == MILESTONES_COLUMNS:
        return "milestones"
    if tuple(header) == columns("rawlens"):
        return "rawlens"
    return None


def _parse_row(kind: SidecarKind, header: list[str], cells: list[str]) -> dict[str, Any]:
    if kind == "milestones":
        name = cells[0]
        metric("milestones", name)  # KeyError: an undeclared milestone
        return {
            "milestone": name,
            "layer": parse_cell(cells[1], "int"),
            "k": parse_cell(cells[2], "int"),
        }
    out = {}
    for col, text in zip(header, cells):
        m = metric("rawlens", col)
        out[col] = parse_cell(text, m.kind, optional=m.optional)
    return out


def parse_sidecar_bytes(data: bytes, source: str, *, strict: bool = True) -> SidecarTable:
    """A sidecar's bytes parsed (the kind from its header); with ``strict`` any violation
    raises :class:`lenscheck.schema.CsvSchemaError` listing all of them."""
    import csv
    import io

    from lenscheck.schema import CSV_DIALECT

    reader = csv.reader(io.StringIO(data.decode(), newline=""), dialect=CSV_DIALECT)
    header = next(reader, [])
    kind = _kind_of(header)
    if kind is None:
        expected = f"{','.join(MILESTONES_COLUMNS)!r} or {','.join(columns('rawlens'))!r}"
        raise CsvSchemaError(
            [
                SchemaViolation(
                    source, 0, "*", f"unknown header {','.join(header)!r}; expected {expected}"
                )
            ]
        )
    table = SidecarTable(source, kind, ",".join(header))
    for n, cells in enumerate(reader, start=1):
        if len(cells) != len(header):
            table.violations.append(
                SchemaViolation(source, n, "*", f"expected {len(header)} cells, found {len(cells)}")
            )
            continue
        try:
            table.rows.append(_parse_row(kind, header, cells))
        except (ValueError, KeyError) as exc:
            table.violations.append(SchemaViolation(source, n, "*", str(exc)))
    if strict and table.violations:
        raise CsvSchemaError(table.violations)
    return table


def read_sidecar(path: str | os.PathLike[str], *, strict: bool = True) -> SidecarTable:
    """Read a ``-pure-next-token-rawlens.csv`` or ``-milestones.csv`` file."""
    return parse_sidecar_bytes(Path(path).read_bytes(), os.fspath(path), strict=strict)
