"""lenscheck.schema: CSV header, rows, rest_mass, quoting, writer, reader and validator."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lenscheck.schema import (
    CSV_DIALECT,
    CsvRow,
    CsvSchemaError,
    SchemaViolation,
    csv_header,
    dump_csv_bytes,
    parse_csv_bytes,
    read_csv,
    record_row,
    rest_mass,
    validate_csv,
    write_csv_files,
)
from lenscheck.strategies import csv_rows, csv_token_strings

# The header line of the original pipeline's output-Meta-Llama-3-8B-records.csv, typed out.
RECORDS_HEADER = (
    "layer,pos,token,entropy,"
    "top1,prob1,top2,prob2,top3,prob3,top4,prob4,top5,prob5,"
    "top6,prob6,top7,prob7,top8,prob8,top9,prob9,top10,prob10,"
    "top11,prob11,top12,prob12,top13,prob13,top14,prob14,top15,prob15,"
    "top16,prob16,top17,prob17,top18,prob18,top19,prob19,top20,prob20,"
    "rest_mass"
)
PURE_HEADER = RECORDS_HEADER + ",copy_collapse,entropy_collapse,is_answer"


def _record(
    layer: int, pos: int, token: str, entropy: float, topk: list[tuple[str, float]], **flags: bool
) -> dict[str, Any]:
    return {
        "layer": layer,
        "pos": pos,
        "token": token,
        "entropy": entropy,
        "topk": [list(p) for p in topk],
        **flags,
    }


def _write_json_data(
    tmp_path: Path, records: list[dict[str, Any]], pure: list[dict[str, Any]], k: int = 20
) -> tuple[bytes, bytes]:
    rec_path, pure_path = tmp_path / "records.csv", tmp_path / "pure.csv"
    write_csv_files({"records": records, "pure_next_token_records": pure}, rec_path, pure_path, k)
    return rec_path.read_bytes(), pure_path.read_bytes()


# ----------------------------------------------------------------------- header and rows


def test_header_is_the_original_pipelines() -> None:
    assert ",".join(csv_header("records")) == RECORDS_HEADER
    assert ",".join(csv_header("pure")) == PURE_HEADER
    assert len(csv_header("records")) == 45 and len(csv_header("pure")) == 48


@pytest.mark.parametrize("kind", ["RECORDS", "record", "", None])
def test_unknown_csv_kind_is_refused(kind: Any) -> None:
    # A typo must not silently fall back to the records layout.
    with pytest.raises(ValueError, match=r"CSV kind must be 'records' or 'pure', got "):
        csv_header(kind)


@pytest.mark.parametrize(
    ("k", "error", "message"),
    [
        (0, ValueError, "top_k_verbose must be >= 1, got 0"),
        (-1, ValueError, "top_k_verbose must be >= 1, got -1"),
        (True, TypeError, "top_k_verbose must be an integer >= 1, got True (bool)"),
    ],
)
def test_csv_header_refuses_a_non_positive_k(k: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        csv_header("records", k)
    assert str(info.value) == message


def test_written_files_start_with_the_exact_header(tmp_path: Path) -> None:
    records, pure = _write_json_data(tmp_path, [], [])
    assert records == (RECORDS_HEADER + "\n").encode()
    assert pure == (PURE_HEADER + "\n").encode()


def test_row_length_padding_and_rest_mass(tmp_path: Path) -> None:
    recs = [
        _record(0, 0, "A", 2.5, [("x", 0.5), ("y", 0.25)]),
        _record(3, 7, "B", 0.0, [(f"t{i}", 0.04) for i in range(20)]),
    ]
    pure = [
        _record(
            3,
            7,
            "⟨NEXT⟩",
            0.75,
            [("x", 0.625), ("y", 0.25), ("z", 0.125)],
            copy_collapse=True,
            entropy_collapse=True,
            is_answer=False,
        )
    ]
    rec_bytes, pure_bytes = _write_json_data(tmp_path, recs, pure)
    rows = list(csv.reader(io.StringIO(rec_bytes.decode(), newline=""), dialect=CSV_DIALECT))
    assert [len(r) for r in rows] == [45, 45, 45]
    assert rows[1][:8] == ["0", "0", "A", "2.5", "x", "0.5", "y", "0.25"]
    assert rows[1][8:44] == [""] * 36  # 18 empty (token, prob) pairs
    assert rows[1][44] == "0.25"  # 1 - 0.5 - 0.25
    assert float(rows[2][44]) == pytest.approx(1 - 20 * 0.04, abs=1e-15)
    assert float(rows[2][44]) >= 0.0
    prow = list(csv.reader(io.StringIO(pure_bytes.decode(), newline=""), dialect=CSV_DIALECT))[1]
    assert len(prow) == 48
    assert prow[2] == "⟨NEXT⟩"
    assert prow[44:] == ["0.0", "True", "True", "False"]  # 1 - 0.625 - 0.25 - 0.125 == 0


def test_record_without_topk_is_a_padded_row() -> None:
    row = record_row({"layer": 1, "pos": 2, "token": "a", "entropy": 0.5})
    assert row == CsvRow(1, 2, "a", 0.5, (), 1.0, ())
    assert row.cells(2) == [1, 2, "a", 0.5, "", "", "", "", 1.0]


def test_rest_mass_rule() -> None:
    assert rest_mass([]) == 1.0
    assert rest_mass([0.5, 0.25]) == 0.25
    assert rest_mass([0.7, 0.4]) == 0.0  # never negative
    assert rest_mass(iter([0.1] * 10)) == max(0.0, 1.0 - sum([0.1] * 10))  # left to right


def test_quoting_exact_bytes(tmp_path: Path) -> None:
    recs = [
        _record(
            1,
            2,
            'say "hi", ok',
            1.5,
            [("a,b", 0.5), ('"q"', 0.25), ("back\\slash", 0.125), ("new\nline", 0.0625)],
        )
    ]
    rec_bytes, _ = _write_json_data(tmp_path, recs, [])
    line = rec_bytes.split(b"\n", 1)[1]
    expected = (
        '1,2,"say ""hi"", ok",1.5,"a,b",0.5,"""q""",0.25,back\\\\slash,0.125,"new\nline",0.0625'
        + "," * 33
        + "0.0625\n"
    ).encode()
    assert line == expected


@pytest.mark.parametrize(
    ("token", "cell"),
    [
        ("plain", b"plain"),
        (" Berlin", b" Berlin"),
        ("a,b", b'"a,b"'),
        ('"', b'""""'),
        ("\\", b"\\\\"),
        ('\\"', b'"\\\\"""'),
        (",'\\", b'",\'\\\\"'),  # as in the published Llama-3 records CSV
        ("\n", b'"\n"'),
        ("\r", b'"\r"'),  # a lone CR must be quoted too, or readers split the row
        (" ;\r\n", b'" ;\r\n"'),  # as in the published Llama-3 records CSV
        ("<0x0A>", b"<0x0A>"),
        ("\ufffd", "\ufffd".encode()),
        ("é中🙂", "é中🙂".encode()),
        ("", b""),
    ],
)
def test_token_cell_bytes(token: str, cell: bytes) -> None:
    row = CsvRow(layer=0, pos=0, token=token, entropy=1.0, topk=(), rest_mass=1.0)
    body = dump_csv_bytes("records", [row]).split(b"\n", 1)[1]
    assert body == b"0,0," + cell + b",1.0" + b"," * 41 + b"1.0\n"


def test_booleans_and_floats_as_the_original_wrote_them(tmp_path: Path) -> None:
    pure = [
        _record(
            0,
            5,
            "⟨NEXT⟩",
            16.963339351852532,
            [("ouv", 1.2716422133962624e-05)],
            copy_collapse=False,
            entropy_collapse=False,
            is_answer=True,
        )
    ]
    _, pure_bytes = _write_json_data(tmp_path, [], pure)
    line = pure_bytes.decode().split("\n")[1]
    assert line.startswith("0,5,⟨NEXT⟩,16.963339351852532,ouv,1.2716422133962624e-05,,")
    assert line.endswith(f",{1.0 - 1.2716422133962624e-05!r},False,False,True")
    assert line.endswith(",0.999987283577866,False,False,True")


@pytest.mark.parametrize(
    ("k", "error", "message"),
    [
        (0, ValueError, "top_k_verbose must be >= 1, got 0"),
        (-3, ValueError, "top_k_verbose must be >= 1, got -3"),
        (True, TypeError, "top_k_verbose must be an integer >= 1, got True (bool)"),
        (2.0, TypeError, "top_k_verbose must be an integer >= 1, got 2.0 (float)"),
    ],
)
def test_write_csv_files_rejects_bad_top_k_verbose(
    tmp_path: Path, k: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        write_csv_files(
            {"records": [], "pure_next_token_records": []},
            tmp_path / "a.csv",
            tmp_path / "b.csv",
            k,
        )
    assert str(info.value) == message
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_more_pairs_than_top_k_verbose_is_an_error(tmp_path: Path) -> None:
    recs = [_record(0, 0, "A", 1.0, [("x", 0.1)] * 6)]
    with pytest.raises(ValueError, match="6 top-k pairs, more than top_k_verbose=5"):
        _write_json_data(tmp_path, recs, [], k=5)


def test_narrower_top_k_verbose_round_trips_for_both_files(tmp_path: Path) -> None:
    recs = [_record(0, 0, "A", 1.0, [("x", 0.5), ("y", 0.25)])]
    flags = {"copy_collapse": False, "entropy_collapse": True, "is_answer": False}
    pure = [_record(0, 0, "⟨NEXT⟩", 1.0, [("x", 0.5)], **flags)]
    rec_bytes, pure_bytes = _write_json_data(tmp_path, recs, pure, k=3)
    head = b"layer,pos,token,entropy,top1,prob1,top2,prob2,top3,prob3,rest_mass"
    assert rec_bytes.split(b"\n")[0] == head
    assert pure_bytes.split(b"\n")[0] == head + b",copy_collapse,entropy_collapse,is_answer"
    table = read_csv(tmp_path / "records.csv")
    assert (table.kind, table.top_k_verbose) == ("records", 3)
    assert table.rows[0].topk == (("x", 0.5), ("y", 0.25))
    pure_table = read_csv(tmp_path / "pure.csv")
    assert (pure_table.kind, pure_table.top_k_verbose) == ("pure", 3)
    assert pure_table.rows[0].flags == (False, True, False)


# ------------------------------------------------------------------- property: round trip


@st.composite
def csv_tables(draw: st.DrawFn) -> tuple[str, int, list[CsvRow]]:
    kind = draw(st.sampled_from(["records", "pure"]))
    k = draw(st.integers(1, 20))
    rows = draw(st.lists(csv_rows(kind, top_k_verbose=k), max_size=3))
    return kind, k, rows


@given(table=csv_tables())
def test_csv_round_trip_is_exact(table: tuple[str, int, list[CsvRow]]) -> None:
    kind, k, rows = table
    data = dump_csv_bytes(kind, rows, k)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_bytes(data)
        assert validate_csv(path) == []
        parsed = read_csv(path)
    assert (parsed.kind, parsed.top_k_verbose) == (kind, k)
    assert parsed.header == ",".join(csv_header(kind, k))  # type: ignore[arg-type]
    assert parsed.rows == rows  # tokens and floats exactly
    assert [r.token for r in parsed.rows] == [r.token for r in rows]
    assert dump_csv_bytes(parsed.kind, parsed.rows, parsed.top_k_verbose) == data
    in_memory = parse_csv_bytes(data, "t.csv")
    assert (in_memory.rows, in_memory.header, in_memory.kind) == (rows, parsed.header, kind)


@pytest.mark.parametrize("token", ["\r", "a\r\nb", "\n", "x\ry\n"])
def test_carriage_returns_in_tokens_survive_both_readers(tmp_path: Path, token: str) -> None:
    """Line endings inside a quoted cell are data: neither reader translates them."""
    rows = [CsvRow(layer=0, pos=0, token=token, entropy=0.5, topk=((token, 0.5),), rest_mass=0.5)]
    data = dump_csv_bytes("records", rows, 1)
    (tmp_path / "t.csv").write_bytes(data)
    for table in (parse_csv_bytes(data, "t.csv"), read_csv(tmp_path / "t.csv")):
        assert [(r.token, r.topk[0][0]) for r in table.rows] == [(token, token)]


@given(tokens=st.lists(csv_token_strings(), min_size=1, max_size=12))
def test_arbitrary_tokens_survive_write_csv_files(tokens: list[str]) -> None:
    probs = [1.0 / (2 + i) ** 2 for i in range(len(tokens))]
    recs = [_record(0, i, t, 0.5, list(zip(tokens, probs))) for i, t in enumerate(tokens)]
    with tempfile.TemporaryDirectory() as tmp:
        rec_bytes, _ = _write_json_data(Path(tmp), recs, [])
        parsed = read_csv(Path(tmp) / "records.csv")
        again = dump_csv_bytes("records", parsed.rows)
    assert [r.token for r in parsed.rows] == tokens
    assert [tuple(t for t, _ in r.topk) for r in parsed.rows] == [tuple(tokens)] * len(tokens)
    assert [p for _, p in parsed.rows[0].topk] == probs
    assert again == rec_bytes


def test_parsed_bytes_give_back_the_records_the_writer_took(tmp_path: Path) -> None:
    """write_csv_files -> parse_csv_bytes -> records(): the same dicts, flags included."""
    recs = [
        _record(0, 0, "<s>", 3.5, [("a", 0.5), ("b", 0.25)]),
        _record(0, 1, ' x,"y"', 0.125, [(" x", 0.75)]),
    ]
    pure = [
        _record(
            2,
            1,
            "⟨NEXT⟩",
            0.25,
            [(" Berlin", 0.875)],
            copy_collapse=True,
            entropy_collapse=True,
            is_answer=False,
        ),
        _record(
            3,
            1,
            "⟨NEXT⟩",
            1.5,
            [("x", 0.5)],
            copy_collapse=False,
            entropy_collapse=False,
            is_answer=True,
        ),
    ]
    rec_bytes, pure_bytes = _write_json_data(tmp_path, recs, pure, k=3)
    records = parse_csv_bytes(rec_bytes, "mem-records.csv")
    assert (records.kind, records.top_k_verbose, records.path) == ("records", 3, "mem-records.csv")
    assert records.records() == recs
    table = parse_csv_bytes(pure_bytes, "mem-pure.csv")
    assert table.kind == "pure"
    assert table.records() == pure
    assert [list(r) for r in table.records()] == [list(r) for r in pure]  # key order too


def test_parse_csv_bytes_names_its_source_and_honours_strict() -> None:
    data = (RECORDS_HEADER + "\n0,0,a,not-a-number," + ",".join(["x", "1"] * 20) + ",0\n").encode()
    with pytest.raises(CsvSchemaError) as info:
        parse_csv_bytes(data, "from-memory.csv")
    assert {v.path for v in info.value.violations} == {"from-memory.csv"}
    lenient = parse_csv_bytes(data, "from-memory.csv", strict=False)
    assert lenient.violations == info.value.violations
    assert [(v.row, v.column) for v in lenient.violations] == [(1, "entropy")]
    assert [(r.layer, r.entropy) for r in lenient.rows] == [(0, 0.0)]  # unparsed: 0


def test_lenient_rows_read_unparsed_numbers_as_zero() -> None:
    cells = ["x", "y", "a", "1.5", *["t", "0.25"], *[""] * 38, "0.75"]
    data = (RECORDS_HEADER + "\n" + ",".join(cells) + "\n").encode()
    table = parse_csv_bytes(data, "m.csv", strict=False)
    assert [(v.column, v.message) for v in table.violations] == [
        ("layer", "expected int, found 'x'"),
        ("pos", "expected int, found 'y'"),
    ]
    row = table.rows[0]
    assert (row.layer, row.pos, row.entropy, row.topk, row.rest_mass) == (
        0,
        0,
        1.5,
        (("t", 0.25),),
        0.75,
    )


# -------------------------------------------------------------------------------- validator


def _write_cells(path: Path, header: str, rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(header + "\n")
        writer = csv.writer(fh, dialect=CSV_DIALECT)
        for row in rows:
            writer.writerow(row)
    return path


def _good_cells(layer: int = 0, pure: bool = False) -> list[str]:
    cells = [str(layer), "3", "tok", "1.25", "a", "0.5", "b", "0.25"] + [""] * 36 + ["0.25"]
    return cells + (["False", "True", "False"] if pure else [])


def test_valid_file_has_no_violations(tmp_path: Path) -> None:
    path = _write_cells(
        tmp_path / "ok.csv", PURE_HEADER, [_good_cells(0, True), _good_cells(1, True)]
    )
    assert validate_csv(path) == []
    table = read_csv(path)
    assert [r.flags for r in table.rows] == [(False, True, False)] * 2


@pytest.mark.parametrize(
    ("mutate", "column", "message"),
    [
        (lambda c: c[:-1], "*", "expected 45 cells, found 44"),
        (lambda c: [*c[:5], "abc", *c[6:]], "prob1", "expected float, found 'abc'"),
        (
            lambda c: [*c[:5], "1.5", *c[6:]],
            "prob1",
            "expected a value in [0.0, 1.0], found '1.5'",
        ),
        (lambda c: [*c[:5], "nan", *c[6:]], "prob1", "expected a finite number, found 'nan'"),
        (
            lambda c: [*c[:3], "-1.0", *c[4:]],
            "entropy",
            "expected a value in [0.0, inf], found '-1.0'",
        ),
        (lambda c: ["x", *c[1:]], "layer", "expected int, found 'x'"),
        (lambda c: ["-1", *c[1:]], "layer", "expected a value in [0, inf], found '-1'"),
        (lambda c: [c[0], "-2", *c[2:]], "pos", "expected a value in [0, inf], found '-2'"),
        (lambda c: [*c[:44], "0.3"], "rest_mass", "expected 1 - sum(probs) = 0.25, found 0.3"),
        (
            lambda c: [*c[:44], "1.5"],
            "rest_mass",
            "expected a value in [0.0, 1.0], found '1.5'",
        ),
        (lambda c: [*c[:44], "oops"], "rest_mass", "expected float, found 'oops'"),
        (
            lambda c: [*c[:6], "", "", "late", "0.1", *c[10:44], "0.4"],
            "prob3",
            "a (token, prob) pair after empty padding cells",
        ),
        (
            lambda c: [*c[:8], "", "", "c", "0.125", *c[12:]],
            "prob4",
            "a (token, prob) pair after empty padding cells",
        ),
        (lambda c: [*c[:8], "orphan", *c[9:]], "top3", "token 'orphan' without a probability"),
        # A token whose probability is gone: one violation, not also a rest_mass one.
        (lambda c: [*c[:7], "", *c[8:]], "top2", "token 'b' without a probability"),
    ],
    ids=[
        "cell-count",
        "non-float-prob",
        "prob-range",
        "nan-prob",
        "negative-entropy",
        "non-int-layer",
        "negative-layer",
        "negative-pos",
        "rest-mass",
        "rest-mass-range",
        "non-float-rest-mass",
        "pair-after-padding",
        "pair-after-padding-later",
        "token-without-prob",
        "pair-without-prob",
    ],
)
def test_validator_reports_row_and_column(
    tmp_path: Path, mutate: Any, column: str, message: str
) -> None:
    rows = [_good_cells(0), mutate(_good_cells(1)), _good_cells(2)]
    path = _write_cells(tmp_path / "bad.csv", RECORDS_HEADER, rows)
    violations = validate_csv(path)
    assert violations == [SchemaViolation(str(path), 2, column, message)]
    assert str(violations[0]) == f"{path}: row 2, column {column!r}: {message}"
    with pytest.raises(CsvSchemaError) as info:
        read_csv(path)
    assert info.value.violations == violations
    assert str(info.value) == f"1 schema violation(s):\n  {violations[0]}"
    # Lenient reading keeps every row it could split into the right number of cells.
    lenient = read_csv(path, strict=False)
    assert (lenient.path, lenient.kind, lenient.top_k_verbose) == (str(path), "records", 20)
    assert len(lenient.rows) == (2 if column == "*" else 3)
    assert lenient.violations == violations


@pytest.mark.parametrize("value", ["yes", "true", "1", ""])
def test_validator_rejects_bad_booleans(tmp_path: Path, value: str) -> None:
    bad = _good_cells(1, pure=True)
    bad[46] = value  # entropy_collapse
    path = _write_cells(tmp_path / "bad.csv", PURE_HEADER, [_good_cells(0, True), bad])
    [v] = validate_csv(path)
    assert (v.row, v.column) == (2, "entropy_collapse")
    assert f"expected True or False, found {value!r}" in v.message


def test_validator_reports_every_violation(tmp_path: Path) -> None:
    """Every row is checked: an earlier row's violations hide nothing in a later row."""
    bad1 = _good_cells(0)
    bad1[5] = "zz"
    bad2 = [*_good_cells(1)[:44], "0.5"]
    bad3 = _good_cells(2)[:-2]
    path = _write_cells(tmp_path / "bad.csv", RECORDS_HEADER, [bad1, bad2, bad3, _good_cells(3)])
    assert [(v.row, v.column, v.message) for v in validate_csv(path)] == [
        (1, "prob1", "expected float, found 'zz'"),
        (2, "rest_mass", "expected 1 - sum(probs) = 0.25, found 0.5"),
        (3, "*", "expected 45 cells, found 43"),
    ]


def test_rest_mass_tolerance_is_strictly_above_1e_9(tmp_path: Path) -> None:
    full = [*_good_cells()[:5], "1.0", "b", "0.0", *_good_cells()[8:44]]
    ok = _write_cells(tmp_path / "ok.csv", RECORDS_HEADER, [[*full, "1e-09"]])
    assert validate_csv(ok) == []  # |0 - 1e-9| == 1e-9: accepted
    bad = _write_cells(tmp_path / "bad.csv", RECORDS_HEADER, [[*full, "2e-09"]])
    assert validate_csv(bad) == [
        SchemaViolation(str(bad), 1, "rest_mass", "expected 1 - sum(probs) = 0.0, found 2e-09")
    ]


@pytest.mark.parametrize("n", [1, 20, 21, 23])
def test_schema_error_lists_twenty_violations_then_counts(n: int) -> None:
    violations = [SchemaViolation("f.csv", i, "entropy", "bad") for i in range(1, n + 1)]
    err = CsvSchemaError(violations)
    shown = [f"f.csv: row {i}, column 'entropy': bad" for i in range(1, min(n, 20) + 1)]
    tail = [f"... and {n - 20} more"] if n > 20 else []
    assert str(err) == f"{n} schema violation(s):\n  " + "\n  ".join(shown + tail)
    assert err.violations == violations


def test_unknown_header_and_empty_file(tmp_path: Path) -> None:
    bad_header = _write_cells(tmp_path / "h.csv", "layer,pos,oops", [])
    unknown = SchemaViolation(
        str(bad_header),
        0,
        "*",
        f"unknown header 'layer,pos,oops'; expected {RECORDS_HEADER!r} (+ flag columns for the "
        "pure CSV)",
    )
    assert validate_csv(bad_header) == [unknown]
    with pytest.raises(CsvSchemaError) as info:
        read_csv(bad_header)
    assert info.value.violations == [unknown]
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    missing = SchemaViolation(str(empty), 0, "*", "empty file, expected a header")
    assert validate_csv(empty) == [missing]
    with pytest.raises(CsvSchemaError) as info:
        read_csv(empty)
    assert info.value.violations == [missing]


def test_unreadable_csv_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('"layer"x,pos\n', encoding="utf-8")  # in the header
    unreadable = SchemaViolation(str(path), 0, "*", "unreadable CSV: ',' expected after '\"'")
    assert validate_csv(path) == [unreadable]
    with pytest.raises(CsvSchemaError) as info:
        read_csv(path)
    assert info.value.violations == [unreadable]
    # In a data row: the rows before it are kept, and the line is named.
    good = ",".join(_good_cells())
    path.write_text(RECORDS_HEADER + "\n" + good + '\n0,0,"a"b\n', encoding="utf-8")
    table = read_csv(path, strict=False)
    assert len(table.rows) == 1
    assert table.violations == [
        SchemaViolation(str(path), 3, "*", "unreadable CSV: ',' expected after '\"'")
    ]
    # An unterminated quote swallows the rest of the file: reported, not raised.
    path.write_text(RECORDS_HEADER + '\n0,0,"open' + ",x" * 42 + "\n", encoding="utf-8")
    violations = validate_csv(path)
    assert [(v.column, v.message.split(":")[0]) for v in violations] == [("*", "unreadable CSV")]
