"""The CSV schema as code: dialect, headers, row builders, writer, reader and validator.

Byte compatibility with the original pipeline's files is the contract: ``,``
delimiter, ``"`` quoting (QUOTE_MINIMAL, quotes doubled), backslash escapechar,
``\\n`` line ends, floats written with Python's ``repr`` and booleans as
``True``/``False``. Every row is padded to 20 (token, prob) pairs.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lenscheck._validate import check_positive_int
from lenscheck.artifacts import atomic_write_bytes
from lenscheck.metrics.table import declared
from lenscheck.vocab import SCHEMA_ORIGINAL, TOP_K_RECORD, TOP_K_VERBOSE

__all__ = [
    "CSV_DIALECT",
    "FLAG_COLUMNS",
    "TOP_K_RECORD",
    "TOP_K_VERBOSE",
    "CsvRow",
    "CsvSchemaError",
    "CsvTable",
    "SchemaViolation",
    "csv_header",
    "dump_csv_bytes",
    "dump_rows_bytes",
    "parse_cell",
    "parse_csv_bytes",
    "pure_row",
    "read_csv",
    "record_row",
    "rest_mass",
    "validate_csv",
    "write_csv",
    "write_csv_files",
]

#: The pure CSV's collapse flags: its columns beyond the records CSV's, as the metric table
#: declares them (lenscheck.metrics.table, schema ``original``).
FLAG_COLUMNS = tuple(str(m.column) for m in declared("pure", SCHEMA_ORIGINAL))
#: The declared pair of columns a row repeats once per top-k entry: ``top1,prob1,...``.
_PAIR = ("topN", "probN")
CsvKind = Literal["records", "pure"]


class _LensDialect(csv.Dialect):
    delimiter = ","
    quotechar = '"'
    escapechar = "\\"
    doublequote = True
    skipinitialspace = False
    lineterminator = "\n"
    quoting = csv.QUOTE_MINIMAL
    strict = True


CSV_DIALECT: type[csv.Dialect] = _LensDialect


class _RowWriterDialect(_LensDialect):
    r"""Writes one row at a time; :func:`dump_csv_bytes` swaps the ``\r\n`` for ``\n``.

    Python's writer (3.11 at least) quotes a field for the characters of ``lineterminator``,
    not for ``\r`` as such: with ``\n`` a token holding a lone ``\r`` went out unquoted
    and every reader split the row there. With ``\r\n`` both force quoting, which is the
    only change: fields with ``\n`` were quoted already.
    """

    lineterminator = "\r\n"


def csv_header(
    kind: CsvKind, top_k_verbose: int = TOP_K_VERBOSE, extra: Sequence[str] = ()
) -> list[str]:
    """``layer,pos,token,entropy,top1,prob1,...,rest_mass`` (+ flags for the pure CSV, then
    the extended schema's ``extra`` columns)."""
    if kind not in ("records", "pure"):
        raise ValueError(f"CSV kind must be 'records' or 'pure', got {kind!r}")
    check_positive_int("top_k_verbose", top_k_verbose)
    header: list[str] = []
    for m in declared("records", SCHEMA_ORIGINAL):
        if m.column == _PAIR[0]:
            for i in range(1, top_k_verbose + 1):
                header += [f"top{i}", f"prob{i}"]
        elif m.column != _PAIR[1]:
            header.append(str(m.column))
    if kind == "pure":
        header += list(FLAG_COLUMNS) + list(extra)
    return header


def rest_mass(probs: Iterable[float]) -> float:
    """``max(0, 1 - sum(probs))`` summed left to right in double, as the original did."""
    total = 0.0
    for p in probs:
        total += p
    return max(0.0, 1.0 - total)


@dataclass(frozen=True)
class CsvRow:
    """One parsed CSV row; ``flags`` is empty for the records CSV."""

    layer: int
    pos: int
    token: str
    entropy: float
    topk: tuple[tuple[str, float], ...]
    rest_mass: float
    flags: tuple[bool, ...] = ()
    #: The extended schema's columns after the flags: (column, value), in file order.
    extra: tuple[tuple[str, Any], ...] = ()

    def as_record(self) -> dict[str, Any]:
        """The row as a record dict, the shape the lens builds and the writer takes."""
        rec: dict[str, Any] = {
            "layer": self.layer,
            "pos": self.pos,
            "token": self.token,
            "entropy": self.entropy,
            "topk": [[t, p] for t, p in self.topk],
        }
        rec.update(zip(FLAG_COLUMNS, self.flags))
        if self.extra:
            rec["metrics"] = dict(self.extra)
        return rec

    def cells(self, top_k_verbose: int = TOP_K_VERBOSE) -> list[Any]:
        """The row as the writer's cells, padded to ``top_k_verbose`` pairs."""
        if len(self.topk) > top_k_verbose:
            raise ValueError(
                f"row layer={self.layer} pos={self.pos} has {len(self.topk)} top-k pairs, "
                f"more than top_k_verbose={top_k_verbose}"
            )
        cells: list[Any] = [self.layer, self.pos, self.token, self.entropy]
        for tok, prob in self.topk:
            cells += [tok, prob]
        cells += ["", ""] * (top_k_verbose - len(self.topk))
        cells.append(self.rest_mass)
        cells += list(self.flags)
        cells += ["" if v is None else v for _, v in self.extra]
        return cells


def _row_from_record(rec: Mapping[str, Any], flags: tuple[bool, ...]) -> CsvRow:
    topk = tuple((str(t), float(p)) for t, p in rec.get("topk", []))
    extra = tuple((rec.get("metrics") or {}).items())
    return CsvRow(
        layer=int(rec["layer"]),
        pos=int(rec["pos"]),
        token=str(rec["token"]),
        entropy=float(rec["entropy"]),
        topk=topk,
        rest_mass=rest_mass(p for _, p in topk),
        flags=flags,
        extra=extra,
    )


def record_row(rec: Mapping[str, Any]) -> CsvRow:
    """Row of the records CSV from a record dict (layer, pos, token, entropy, topk)."""
    return _row_from_record(rec, ())


def pure_row(rec: Mapping[str, Any]) -> CsvRow:
    """Row of the pure next-token CSV: a record dict plus the three collapse flags."""
    return _row_from_record(rec, tuple(bool(rec[f]) for f in FLAG_COLUMNS))


def dump_csv_bytes(
    kind: CsvKind, rows: Iterable[CsvRow], top_k_verbose: int = TOP_K_VERBOSE
) -> bytes:
    """The exact bytes of a CSV file of ``kind`` holding ``rows`` (the extended schema's
    columns in the header when the first row has them)."""
    rows = list(rows)
    extra = [c for c, _ in rows[0].extra] if rows else []
    return dump_rows_bytes(
        csv_header(kind, top_k_verbose, extra), (row.cells(top_k_verbose) for row in rows)
    )


def dump_rows_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """The bytes of a CSV in the lens dialect: ``header``, then each row's cells (floats as
    ``repr``, booleans ``True``/``False``, None as an empty cell)."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, dialect=_RowWriterDialect)
    lines: list[str] = []

    def put(cells: Sequence[Any]) -> None:
        writer.writerow(["" if c is None else c for c in cells])
        line = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        lines.append(line[: -len("\r\n")] + "\n")

    put(header)
    for cells in rows:
        put(cells)
    return "".join(lines).encode()  # str.encode is always UTF-8


def write_csv(
    path: str | os.PathLike[str],
    kind: CsvKind,
    rows: Iterable[CsvRow],
    top_k_verbose: int = TOP_K_VERBOSE,
) -> None:
    """Write a CSV atomically: a temporary sibling renamed into place when complete."""
    atomic_write_bytes(Path(path), dump_csv_bytes(kind, rows, top_k_verbose))


def write_csv_files(
    json_data: Mapping[str, Any],
    csv_filepath: str | os.PathLike[str],
    pure_csv_filepath: str | os.PathLike[str],
    top_k_verbose: int,
) -> None:
    """Write the records CSV and the pure next-token CSV (the original pipeline's API)."""
    check_positive_int("top_k_verbose", top_k_verbose)
    records = [record_row(r) for r in json_data["records"]]
    pure = [pure_row(r) for r in json_data["pure_next_token_records"]]
    write_csv(csv_filepath, "records", records, top_k_verbose)
    write_csv(pure_csv_filepath, "pure", pure, top_k_verbose)


# --------------------------------------------------------------------- reading


@dataclass(frozen=True)
class SchemaViolation:
    """One problem in a CSV file; ``row`` counts data rows from 1 (0 is the header)."""

    path: str
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: row {self.row}, column {self.column!r}: {self.message}"


class CsvSchemaError(ValueError):
    """A CSV file that does not follow the lens schema; lists every violation."""

    def __init__(self, violations: Sequence[SchemaViolation]) -> None:
        self.violations = list(violations)
        shown = "\n  ".join(str(v) for v in self.violations[:20])
        more = len(self.violations) - 20
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(self.violations)} schema violation(s):\n  {shown}{tail}")


@dataclass
class CsvTable:
    """A parsed lens CSV: which kind, its rows, and any violations found while parsing."""

    path: str
    kind: CsvKind
    top_k_verbose: int
    rows: list[CsvRow] = field(default_factory=list)
    violations: list[SchemaViolation] = field(default_factory=list)
    header: str = ""

    def records(self) -> list[dict[str, Any]]:
        """The rows as the lens' record dicts (``topk`` pairs; flags for the pure CSV)."""
        return [row.as_record() for row in self.rows]


def parse_cell(text: str, kind: str, *, optional: bool = True) -> Any:
    """A metric cell's value as its declaration's ``kind`` says (``float``, ``int``,
    ``bool``, ``str``); an empty cell is None. Raises ValueError on a cell that does not
    parse (a non-finite float, a bool other than ``True``/``False``, an empty cell that
    is not ``optional``)."""
    if kind == "str":
        return text
    if text == "":
        if optional:
            return None
        raise ValueError("an empty cell where a value is required")
    if kind == "bool":
        if text not in ("True", "False"):
            raise ValueError(f"expected True or False, found {text!r}")
        return text == "True"
    value = int(text) if kind == "int" else float(text)
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, found {text!r}")
    return value


class _RowParser:
    def __init__(self, path: str, kind: CsvKind, header: list[str], n_extra: int = 0) -> None:
        self.path, self.kind, self.header = path, kind, header
        self.n_extra = n_extra
        self.violations: list[SchemaViolation] = []

    def extra(self, n: int, cells: list[str]) -> tuple[tuple[str, Any], ...]:
        """The extended columns, each parsed as its declaration says (undeclared: text)."""
        from lenscheck.metrics.table import metric

        out: list[tuple[str, Any]] = []
        for col, text in zip(self.header[len(self.header) - self.n_extra :], cells):
            try:
                m = metric("pure", col)
            except KeyError:
                out.append((col, text))
                continue
            try:
                out.append((col, parse_cell(text, m.kind, optional=m.optional)))
            except ValueError as exc:
                self.bad(n, col, str(exc))
                out.append((col, None))
        return tuple(out)

    def bad(self, row: int, col: str, msg: str) -> None:
        self.violations.append(SchemaViolation(self.path, row, col, msg))

    def number(
        self, n: int, col: str, text: str, kind: type, lo: float = -math.inf, hi: float = math.inf
    ) -> Any:
        try:
            value = kind(text)
        except ValueError:
            self.bad(n, col, f"expected {kind.__name__}, found {text!r}")
            return kind(0)
        if isinstance(value, float) and not math.isfinite(value):
            self.bad(n, col, f"expected a finite number, found {text!r}")
        elif not lo <= value <= hi:
            self.bad(n, col, f"expected a value in [{lo}, {hi}], found {text!r}")
        return value

    def flag(self, n: int, col: str, text: str) -> bool:
        if text not in ("True", "False"):
            self.bad(n, col, f"expected True or False, found {text!r}")
        return text == "True"

    def topk(self, n: int, cells: list[str]) -> tuple[tuple[str, float], ...]:
        pairs: list[tuple[str, float]] = []
        for rank, (tok, prob) in enumerate(zip(cells[::2], cells[1::2]), start=1):
            if prob == "":
                if tok != "":
                    self.bad(n, f"top{rank}", f"token {tok!r} without a probability")
                continue
            col = f"prob{rank}"
            if len(pairs) < rank - 1:  # a padding pair came before this one
                self.bad(n, col, "a (token, prob) pair after empty padding cells")
            pairs.append((tok, self.number(n, col, prob, float, 0.0, 1.0)))
        return tuple(pairs)

    def parse(self, n: int, cells: list[str]) -> CsvRow | None:
        if len(cells) != len(self.header):
            self.bad(n, "*", f"expected {len(self.header)} cells, found {len(cells)}")
            return None
        extra_cells = cells[len(cells) - self.n_extra :] if self.n_extra else []
        cells = cells[: len(cells) - self.n_extra]
        n_flags = len(FLAG_COLUMNS) if self.kind == "pure" else 0
        body = cells[4 : len(cells) - 1 - n_flags]
        seen = len(self.violations)
        row = CsvRow(
            layer=self.number(n, "layer", cells[0], int, 0),
            pos=self.number(n, "pos", cells[1], int, 0),
            token=cells[2],
            entropy=self.number(n, "entropy", cells[3], float, 0.0),
            topk=self.topk(n, body),
            rest_mass=self.number(n, "rest_mass", cells[len(cells) - 1 - n_flags], float, 0.0, 1.0),
            flags=tuple(
                self.flag(n, c, t) for c, t in zip(FLAG_COLUMNS, cells[len(cells) - n_flags :])
            ),
            extra=self.extra(n, extra_cells),
        )
        # Only when the pairs and rest_mass parsed cleanly: a bad prob cell is one violation,
        # not also a rest_mass one.
        mass_ok = not any(
            v.column.startswith(("top", "prob")) or v.column == "rest_mass"
            for v in self.violations[seen:]
        )
        expected = rest_mass(p for _, p in row.topk)
        if mass_ok and abs(expected - row.rest_mass) > 1e-9:
            self.bad(
                n, "rest_mass", f"expected 1 - sum(probs) = {expected!r}, found {row.rest_mass!r}"
            )
        return row


def _detect_kind(header: list[str]) -> tuple[CsvKind, int, int] | None:
    """The kind, the top-k pairs and the number of extended columns a header has."""
    kinds: tuple[CsvKind, ...] = ("records", "pure")
    for kind in kinds:
        n_pairs = (len(header) - 5 - (3 if kind == "pure" else 0)) // 2
        if n_pairs >= 1 and header == csv_header(kind, n_pairs):
            return kind, n_pairs, 0
    if "rest_mass" in header:  # a pure CSV with the extended schema's columns after its flags
        n_pairs = (header.index("rest_mass") - 4) // 2
        base = csv_header("pure", max(n_pairs, 1))
        extra = header[len(base) :]
        unique = len(set(extra)) == len(extra) and "" not in extra
        if n_pairs >= 1 and header[: len(base)] == base and extra and unique:
            return "pure", n_pairs, len(extra)
    return None


def read_csv(path: str | os.PathLike[str], *, strict: bool = True) -> CsvTable:
    """Parse a lens CSV exactly as written (escapechar included).

    With ``strict`` (the default) any schema violation raises :class:`CsvSchemaError`
    listing all of them with row and column; otherwise they are returned in the table,
    whose rows keep every row of the right length, a number that does not parse reading
    as 0 (the violation says where).
    """
    return parse_csv_bytes(Path(path).read_bytes(), os.fspath(path), strict=strict)


def parse_csv_bytes(data: bytes, source: str, *, strict: bool = True) -> CsvTable:
    """:func:`read_csv` on the bytes of a file (``source`` names it in messages)."""
    # newline="": line ends reach the csv module as written (it tells \r\n from \r in a token).
    return _parse(io.StringIO(data.decode(), newline=""), source, strict=strict)


def _parse(fh: Iterable[str], spath: str, *, strict: bool) -> CsvTable:
    reader = csv.reader(fh, dialect=CSV_DIALECT)
    try:
        header = next(reader)
    except StopIteration:
        raise CsvSchemaError(
            [SchemaViolation(spath, 0, "*", "empty file, expected a header")]
        ) from None
    except csv.Error as exc:
        raise CsvSchemaError([SchemaViolation(spath, 0, "*", f"unreadable CSV: {exc}")]) from None
    detected = _detect_kind(header)
    if detected is None:
        expected = ",".join(csv_header("records"))
        violation = SchemaViolation(
            spath,
            0,
            "*",
            f"unknown header {','.join(header)!r}; "
            f"expected {expected!r} (+ flag columns for the pure CSV)",
        )
        raise CsvSchemaError([violation])
    kind, k, n_extra = detected
    table = CsvTable(spath, kind, k, header=",".join(header))
    parser = _RowParser(spath, kind, header, n_extra)
    try:
        for n, cells in enumerate(reader, start=1):
            row = parser.parse(n, cells)
            if row is not None:
                table.rows.append(row)
    except csv.Error as exc:
        parser.bad(reader.line_num, "*", f"unreadable CSV: {exc}")
    table.violations = parser.violations
    if strict and table.violations:
        raise CsvSchemaError(table.violations)
    return table


def validate_csv(path: str | os.PathLike[str]) -> list[SchemaViolation]:
    """Every schema violation in ``path`` (empty list when the file is valid)."""
    try:
        read_csv(path)
    except CsvSchemaError as exc:
        return exc.violations
    return []
