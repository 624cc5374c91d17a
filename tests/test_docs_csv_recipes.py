"""The CSV-reading recipes docs/api.md gives users, run as written there.

The code blocks marked ``# recipe: ...`` in docs/api.md are executed with ``path`` naming a
file lenscheck's own writer produced, so the doc and this test cannot drift apart. The csv
module recipe runs everywhere; the pandas one where pandas is installed (the unit gate
has it through transformer-lens), on top of the csv one, never instead of it.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lenscheck import read_csv
from lenscheck.schema import FLAG_COLUMNS, CsvRow, dump_csv_bytes
from lenscheck.strategies import csv_rows

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"

#: Tokens a careless reader gets wrong: the backslash (escapechar), what pandas takes for
#: missing values, the empty token, the delimiter, quotes, line ends, number- and
#: boolean-like text.
TRICKY = (
    "|'\\",
    "\\",
    "\\n",
    "nan",
    "NULL",
    "N/A",
    "",
    "a,b",
    '"q"',
    "x\ny",
    "a\rb",
    "c\r\nd",
    " Berlin",
    "1",
    "-1.5",
    "True",
    "⟨NEXT⟩",
)


def _recipe(name: str) -> str:
    """The python code block of docs/api.md whose first line is ``# recipe: <name>``."""
    blocks = re.findall(r"```python\n(.*?)```", API_DOC.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if b.startswith(f"# recipe: {name}\n")]
    assert len(found) == 1, f"docs/api.md has {len(found)} '# recipe: {name}' blocks"
    return found[0]


def _run(name: str, path: Path) -> dict[str, Any]:
    namespace: dict[str, Any] = {"path": str(path)}
    exec(compile(_recipe(name), f"docs/api.md ({name})", "exec"), namespace)
    return namespace


def _tricky_rows(kind: str) -> list[CsvRow]:
    """One row per tricky token, as position label and as every listed top-k token; rows
    alternate between 1 and 5 pairs, so most top-k columns hold padding somewhere."""
    rows = []
    for pos, tok in enumerate(TRICKY):
        n = 1 if pos % 2 else 5
        topk = tuple((tok if i == 0 else f"{tok}{i}", 0.5 / (i + 1)) for i in range(n))
        flags = (pos % 2 == 0, pos % 3 == 0, False) if kind == "pure" else ()
        mass = max(0.0, 1.0 - sum(p for _, p in topk))
        rows.append(CsvRow(0, pos, tok, 1.25, topk, mass, flags))
    return rows


@pytest.fixture(params=["records", "pure"])
def tricky(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, list[CsvRow]]:
    rows = _tricky_rows(request.param)
    path = tmp_path / f"{request.param}.csv"
    path.write_bytes(dump_csv_bytes(request.param, rows))
    return path, rows


def _check_text_rows(rows: list[dict[str, str]], expected: list[CsvRow]) -> None:
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected):
        assert got["token"] == want.token
        assert float(got["entropy"]) == want.entropy
        for rank in range(1, 21):
            if rank <= len(want.topk):
                tok, prob = want.topk[rank - 1]
                assert (got[f"top{rank}"], float(got[f"prob{rank}"])) == (tok, prob)
            else:  # padding: both cells empty
                assert (got[f"top{rank}"], got[f"prob{rank}"]) == ("", "")
        assert float(got["rest_mass"]) == want.rest_mass
        assert tuple(got[f] == "True" for f in FLAG_COLUMNS if f in got) == want.flags


def test_the_csv_module_recipe_reads_every_token_back(tricky: tuple[Path, list[CsvRow]]) -> None:
    path, expected = tricky
    _check_text_rows(_run("csv module", path)["rows"], expected)


def test_the_reader_lenscheck_provides_agrees(tricky: tuple[Path, list[CsvRow]]) -> None:
    path, expected = tricky
    assert read_csv(path).rows == expected


def test_a_default_csv_reader_gets_the_backslash_wrong(tricky: tuple[Path, list[CsvRow]]) -> None:
    """What docs/api.md warns about: without the escapechar, |'\\ reads as |'\\\\."""
    path, expected = tricky
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert (expected[0].token, rows[0]["token"]) == ("|'\\", "|'\\\\")


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(["records", "pure"]), data=st.data())
def test_the_csv_module_recipe_round_trips_any_row(kind: str, data: st.DataObject) -> None:
    rows = data.draw(st.lists(csv_rows(kind), min_size=1, max_size=4))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        path.write_bytes(dump_csv_bytes(kind, rows))  # type: ignore[arg-type]
        _check_text_rows(_run("csv module", path)["rows"], rows)


def test_the_pandas_recipe_reads_every_token_back(tricky: tuple[Path, list[CsvRow]]) -> None:
    pytest.importorskip("pandas")
    path, expected = tricky
    df = _run("pandas", path)["df"]
    assert list(df["token"]) == [r.token for r in expected]
    for rank in range(1, 21):
        for got_tok, got_prob, want in zip(df[f"top{rank}"], df[f"prob{rank}"], expected):
            if rank <= len(want.topk):
                tok, prob = want.topk[rank - 1]
                # pandas 3 reads floats exactly; pandas 2's default parser may be off in the
                # last digit (docs/api.md says so, with the option that fixes it).
                assert got_tok == tok and math.isclose(got_prob, prob, rel_tol=1e-15)
            else:  # padding: no token, and a missing probability, not ""
                assert got_tok == "" and math.isnan(got_prob)
        assert df[f"prob{rank}"].dtype.kind == "f"
    assert df["entropy"].dtype.kind == "f" and df["rest_mass"].dtype.kind == "f"
    for flag in FLAG_COLUMNS:
        if flag in df:
            assert df[flag].dtype.kind == "b"
            assert list(df[flag]) == [r.flags[FLAG_COLUMNS.index(flag)] for r in expected]
