"""`lenscheck diff` on the original pipeline's later, several-prompt files
(lenscheck.golden.later), with two real runs of it vendored in tests/data/original-later/."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import pytest

from lenscheck.cli import main
from lenscheck.diff import DiffInputError, diff_paths, load_side
from lenscheck.golden.payload import round_sig
from lenscheck.metrics.table import columns, metric
from lenscheck.schema import CSV_DIALECT, dump_rows_bytes

pytestmark = pytest.mark.covers("lenscheck.golden.compare")

DATA = Path(__file__).parent / "data" / "original-later"
NEW, OLD = DATA / "2025-10-12", DATA / "2025-10-05"
NAME = "Mistral-7B-v0.1"
PURE = f"output-{NAME}-pure-next-token.csv"
RAWLENS = f"output-{NAME}-pure-next-token-rawlens.csv"
OWN = ("pos/orig", "pos/no_filler", "ctl/orig")
FACTS = ("France→Paris", "Italy→Rome", "Japan→Tokyo", "Canada→Ottawa")


def _table(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, dialect=CSV_DIALECT))
    return rows[0], rows[1:]


def _key(header: list[str], cells: list[str]) -> str:
    """The prompt id a row belongs to, by the rule the module documents."""
    n = 4 if header[0] == "fact_key" else 2
    fact, pid, variant = (cells[0] if n == 4 else ""), cells[n - 2], cells[n - 1]
    return "/".join((pid, variant) if fact in ("", "Germany→Berlin") else (fact, pid, variant))


def _parsed(kind: Literal["pure", "rawlens"], column: str, text: str) -> Any:
    m = metric(kind, column)
    if text == "":
        return None
    if m.kind == "float":
        return round_sig(float(text))
    if m.kind == "int":
        return int(text)
    if m.kind == "bool":
        return text == "True"
    return text


@pytest.fixture(scope="module")
def new_doc() -> dict[str, Any]:
    (doc,) = load_side(NEW).values()
    return doc


def test_the_vendored_files_are_the_published_bytes() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"\| `(\S+)` \| (\d+) \| `([0-9a-f]{64})` \|", readme)
    assert len(rows) == 8
    for name, size, digest in rows:
        data = (DATA / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (int(size), digest), name


def test_a_later_set_reads_as_one_prompt_per_key(new_doc: dict[str, Any]) -> None:
    expected = {*OWN, *(f"{f}/pos/{v}" for f in FACTS for v in ("orig", "no_filler"))}
    assert next(iter(new_doc["prompts"])) == "pos/orig"
    assert set(new_doc["prompts"]) == expected
    own = new_doc["prompts"]["pos/orig"]
    assert own["prompt"].endswith("The capital of Germany is called simply")
    assert own["answer"] == "Berlin"
    ctl = new_doc["prompts"]["ctl/orig"]
    assert (ctl["prompt"].endswith("France is called simply"), ctl["answer"]) == (True, "Paris")
    assert new_doc["prompts"]["Japan→Tokyo/pos/orig"]["answer"] == "Tokyo"
    assert new_doc["class"] == "cpu-float32"
    assert all(len(e["next_token"]["layer"]) == 33 for e in new_doc["prompts"].values())


@pytest.mark.parametrize("folder", [NEW, OLD], ids=["2025-10-12", "2025-10-05"])
def test_every_declared_cell_of_the_pure_csv_is_read_from_its_row(folder: Path) -> None:
    (doc,) = load_side(folder).values()
    header, rows = _table(folder / PURE)
    declared = [c for c in columns("pure") if c in header]
    assert len(declared) == len(columns("pure"))  # the original's names are ours
    seen: Counter[str] = Counter()
    for cells in rows:
        pid = _key(header, cells)
        layer = int(cells[header.index("layer")])
        entry = doc["prompts"][pid]
        assert entry["next_token"]["layer"][layer] == layer
        assert entry["next_token"]["entropy"][layer] == round_sig(
            float(cells[header.index("entropy")])
        )
        assert entry["next_token"]["top1"][layer] == cells[header.index("top1")]
        for col in declared:
            got = entry["metrics"]["next_token"][col][layer]
            assert got == _parsed("pure", col, cells[header.index(col)]), (pid, layer, col)
        seen[pid] += 1
    assert set(seen.values()) == {33}


@pytest.mark.parametrize("folder", [NEW, OLD], ids=["2025-10-12", "2025-10-05"])
def test_every_rawlens_cell_is_read_from_its_row(folder: Path) -> None:
    (doc,) = load_side(folder).values()
    header, rows = _table(folder / RAWLENS)
    assert [c for c in header if c in columns("rawlens")] == list(columns("rawlens"))
    for cells in rows:
        rawlens = doc["prompts"][_key(header, cells)]["metrics"]["rawlens"]
        layer = int(cells[header.index("layer")])
        for col in columns("rawlens"):
            expected = _parsed("rawlens", col, cells[header.index(col)])
            assert rawlens[col][layer] == expected, (col, layer)
    assert {len(e["metrics"]["rawlens"]["layer"]) for e in doc["prompts"].values()} == {33}


def test_milestones_and_summaries_come_from_the_json(new_doc: dict[str, Any]) -> None:
    diag = json.loads((NEW / f"output-{NAME}.json").read_text(encoding="utf-8"))["diagnostics"]
    own = new_doc["prompts"]["pos/orig"]["metrics"]
    for name in ("first_rank_le_1", "first_rank_le_5", "first_rank_le_10", "first_kl_below_1.0"):
        assert own["milestones"][name] == diag[name]
    assert (own["milestones"]["first_rank_le_1"], own["milestones"]["first_rank_le_10"]) == (25, 23)
    assert own["milestones"]["L_copy_strict@0.95"] is None  # no strict copy in this run
    summary = own["raw_lens_summary"]
    assert summary["max_kl_norm_vs_raw_bits"] == round_sig(8.556931440271716)
    assert (summary["n_norm_only_semantics"], summary["first_norm_only_semantics_layer"]) == (1, 32)
    assert new_doc["prompts"]["pos/no_filler"]["metrics"]["milestones"] is None  # unknown
    control = new_doc["prompts"]["ctl/orig"]["metrics"]["control_summary"]
    assert control["control_for"] == "pos/orig"
    assert isinstance(control["first_positive_margin_layer"], int)


def test_a_later_set_against_itself_compares_every_value_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (report,) = diff_paths(NEW, NEW)
    assert report.ok and not report.drifts and not report.missing_prompts
    _, rows = _table(NEW / PURE)
    _, raw_rows = _table(NEW / RAWLENS)
    cells = len(rows) * len(columns("pure")) + len(raw_rows) * len(columns("rawlens"))
    assert report.compared["metrics"] >= cells
    assert main(["diff", str(NEW), str(NEW)]) == 0
    assert "no drift beyond tolerance" in capsys.readouterr().out


def _edit(path: Path, pid: str, layer: int, column: str, new: str) -> str:
    header, rows = _table(path)
    for cells in rows:
        if _key(header, cells) == pid and cells[header.index("layer")] == str(layer):
            old, cells[header.index(column)] = cells[header.index(column)], new
            path.write_bytes(dump_rows_bytes(header, rows))
            return old
    raise AssertionError(f"no row {pid} layer {layer}")


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


#: One edit per value class the later files hold: (file, prompt, layer, column, new cell).
EDITS = [
    (PURE, "pos/orig", 25, "p_answer", "0.05"),
    (PURE, "France→Paris/pos/orig", 30, "kl_to_final_bits", "1.75"),
    (PURE, "pos/no_filler", 27, "answer_rank", "4"),
    (PURE, "ctl/orig", 32, "control_margin", "0.5"),
    (PURE, "pos/orig", 20, "cos_to_final", "0.5"),
    (PURE, "Italy→Rome/pos/orig", 10, "topk_jaccard_consecutive@50", "0.9"),
    (PURE, "pos/orig", 32, "top2", "Paris"),
    (PURE, "pos/orig", 32, "copy_strict@0.7", "True"),
    (RAWLENS, "pos/orig", 32, "kl_norm_vs_raw_bits", "6.5"),
    (RAWLENS, "Canada→Ottawa/pos/no_filler", 5, "top1_token_str_raw", "Ottawa"),
    (RAWLENS, "pos/orig", 29, "answer_rank_raw", "7"),
]


@pytest.mark.parametrize(("file", "pid", "layer", "column", "new"), EDITS)
def test_one_edited_cell_is_the_one_drift(
    tmp_path: Path, file: str, pid: str, layer: int, column: str, new: str
) -> None:
    edited = _copy(NEW, tmp_path / "edited")
    old = _edit(edited / file, pid, layer, column, new)
    assert old != new
    (report,) = diff_paths(NEW, edited)
    where = [(d.prompt, d.layer) for d in report.drifts]
    assert where == [(pid, layer)], [str(d) for d in report.drifts]
    assert column in report.drifts[0].metric or report.drifts[0].metric == "top-k tokens"


def test_the_two_published_runs_differ_in_their_jaccards_only() -> None:
    """A finding, pinned: between 2025-10-05 and 2025-10-12 the original's top-50 Jaccard
    columns moved (up to 0.18) while every entropy, probability, rank and KL stayed within
    the fp32 tolerances; the eight prompts of the new facts exist only in the new run."""
    (report,) = diff_paths(OLD, NEW)
    assert not report.ok
    assert sorted(report.missing_prompts) == sorted(
        f"{f}/pos/{v}" for f in FACTS for v in ("orig", "no_filler")
    )
    assert report.removed_prompts == [] and report.changed_prompts == {}
    kinds = Counter(d.metric.split()[-1] for d in report.drifts)
    assert set(kinds) == {"topk_jaccard_raw_norm@50", "topk_jaccard_consecutive@50"}
    assert {d.prompt for d in report.drifts} <= set(OWN)
    assert report.compared["metrics"] > 4000 and report.compared["trajectory"] > 900
    assert main(["diff", str(OLD), str(NEW)]) == 1


def _later_records(folder: Path) -> bytes:
    """A records CSV in the later layout (key columns, ``entropy_bits`` after ``entropy``)
    with one cell per next-token row: the vendored runs leave their 1.9 MB one out."""
    header, rows = _table(folder / PURE)
    n = 4 if header[0] == "fact_key" else 2
    base = ["layer", "pos", "token", "entropy"]
    pairs = [c for i in range(1, 21) for c in (f"top{i}", f"prob{i}")]
    out_header = [*header[:n], *base, "entropy_bits", *pairs, "rest_mass"]
    out = [
        [*cells[:n], *(cells[header.index(c)] for c in base), cells[header.index("entropy")]]
        + [cells[header.index(c)] for c in (*pairs, "rest_mass")]
        for cells in rows
    ]
    return dump_rows_bytes(out_header, out)


def test_a_later_records_csv_is_split_by_prompt(tmp_path: Path) -> None:
    folder = _copy(NEW, tmp_path / "with-records")
    (folder / f"output-{NAME}-records.csv").write_bytes(_later_records(NEW))
    (doc,) = load_side(folder).values()
    header, rows = _table(NEW / PURE)
    for cells in rows:
        entry = doc["prompts"][_key(header, cells)]
        layer, pos = int(cells[header.index("layer")]), int(cells[header.index("pos")])
        assert entry["records"]["entropy"][layer][pos] == round_sig(
            float(cells[header.index("entropy")])
        )
    assert doc["schema"]["records_header"].startswith("layer,pos,token,entropy,top1,")
    assert diff_paths(NEW, folder)[0].ok  # a records CSV on one side only is unknown


def _cut(path: Path, column: str) -> None:
    header, rows = _table(path)
    at = header.index(column)
    path.write_bytes(
        dump_rows_bytes(header[:at] + header[at + 1 :], [c[:at] + c[at + 1 :] for c in rows])
    )


def test_a_row_of_the_wrong_length_names_the_file_and_row(tmp_path: Path) -> None:
    folder = _copy(NEW, tmp_path / "bad")
    header, rows = _table(folder / RAWLENS)
    rows[2] = rows[2][:-1]
    (folder / RAWLENS).write_bytes(dump_rows_bytes(header, rows))
    with pytest.raises(DiffInputError, match=r"rawlens\.csv: row 3.*expected 25 cells, found 24"):
        load_side(folder)


def test_a_missing_lens_column_is_refused_by_name(tmp_path: Path) -> None:
    folder = _copy(NEW, tmp_path / "bad")
    _cut(folder / PURE, "rest_mass")
    with pytest.raises(DiffInputError, match=r"columns \['rest_mass'\] missing"):
        load_side(folder)


def test_a_measurement_an_older_version_lacks_is_unknown_not_drift(tmp_path: Path) -> None:
    """Its values are not drift; the header that changed is (the schema is pinned)."""
    folder = _copy(NEW, tmp_path / "older")
    _cut(folder / PURE, "cos_to_final")
    (doc,) = load_side(folder).values()
    assert "cos_to_final" not in doc["prompts"]["pos/orig"]["metrics"]["next_token"]
    (report,) = diff_paths(NEW, folder)
    assert [(d.section, d.metric) for d in report.drifts] == [("schema", "pure_header")]
    assert report.compared["metrics"] < diff_paths(NEW, NEW)[0].compared["metrics"]


def test_our_own_layout_is_not_mistaken_for_the_later_one() -> None:
    from lenscheck.golden.later import is_later_layout

    ours = dump_rows_bytes(["layer", "pos", "token", "entropy"], [])
    assert not is_later_layout(ours)
    assert is_later_layout((NEW / PURE).read_bytes()) and is_later_layout((OLD / PURE).read_bytes())
    assert not is_later_layout(io.BytesIO(b"prompt_id,layer\n").getvalue())


def _jaccards(doc: dict[str, Any], pid: str, source: str) -> list[Any]:
    part = doc["prompts"][pid]["metrics"][source]
    return [part[f"topk_jaccard_{k}@50"] for k in ("raw_norm", "consecutive")]


def test_the_later_run_wrote_the_last_facts_jaccards_into_every_facts_pure_rows(
    new_doc: dict[str, Any],
) -> None:
    """What the Jaccard drift above is: in 2025-10-12 every fact's pure CSV holds the last
    fact's (Canada→Ottawa) Jaccards, its own rawlens sidecar the prompt's own; 2025-10-05
    agrees with itself. lenscheck's generated test_measurements requires the two files to
    agree exactly (lenscheck.plugin.measures), so a leak like this fails a golden run."""
    (old_doc,) = load_side(OLD).values()
    for pid in OWN:
        assert _jaccards(old_doc, pid, "next_token") == _jaccards(old_doc, pid, "rawlens")
    last = {
        v: _jaccards(new_doc, f"Canada→Ottawa/pos/{v}", "rawlens") for v in ("orig", "no_filler")
    }
    for fact in ("", *(f"{f}/" for f in FACTS)):
        for variant in ("orig", "no_filler"):
            pid = f"{fact}pos/{variant}"
            assert _jaccards(new_doc, pid, "next_token") == last[variant], pid
            if not fact.startswith("Canada"):
                assert _jaccards(new_doc, pid, "rawlens") != last[variant], pid
