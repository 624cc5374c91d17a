"""The metric table: the docs' tables are generated from it, the sidecars round-trip."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from lenscheck.metrics import columns, declared, metric, parse_sidecar_bytes
from lenscheck.metrics.files import dump_milestones_bytes, dump_rawlens_bytes
from lenscheck.metrics.table import METRICS, TOLERANCE_CLASSES, Metric, markdown_table
from lenscheck.schema import FLAG_COLUMNS, CsvRow, dump_csv_bytes, parse_csv_bytes

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"

#: The issue's names, exactly (issue 24).
ISSUE_PURE = [
    "entropy_bits",
    "p_top1",
    "p_top5",
    "p_answer",
    "answer_rank",
    "kl_to_final_bits",
    "teacher_entropy_bits",
    "cos_to_final",
    "answer_logit_gap",
    "answer_vs_top1_gap",
    "resid_norm_ratio",
    "delta_resid_cos",
    "topk_jaccard_raw_norm@50",
    "topk_jaccard_consecutive@50",
    "copy_strict@0.95",
    "copy_strict@0.9",
    "copy_strict@0.8",
    "copy_strict@0.7",
    "copy_soft_k1@0.5",
    "copy_soft_k2@0.5",
    "copy_soft_k3@0.5",
    "control_margin",
]


def test_the_pure_columns_are_the_issues() -> None:
    assert columns("pure") == tuple(ISSUE_PURE)


def test_the_rawlens_header_is_the_originals() -> None:
    head = columns("rawlens")
    assert head[0] == "layer" and head[-1] == "norm_only_semantics"
    for side in ("raw", "norm"):
        for name in ("p_top1", "top1_token_id", "top1_token_str", "p_answer", "answer_rank"):
            assert f"{name}_{side}" in head
    assert len(set(head)) == len(head) == 21


@pytest.mark.parametrize(
    "file", ["records", "pure", "rawlens", "milestones", "json"], ids=lambda f: f
)
def test_docs_tables_are_the_declarations(file: str) -> None:
    text = DOCS.read_text(encoding="utf-8")
    for schema in ("original", "extended"):
        metrics = declared(file, schema)  # type: ignore[arg-type]
        if metrics:
            assert markdown_table(metrics) in text, (
                f"docs/metrics.md lacks the generated {file}/{schema} table; paste "
                f"lenscheck.metrics.table.markdown_table(declared({file!r}, {schema!r}))"
            )


def test_every_declaration_is_well_formed() -> None:
    for m in METRICS:
        assert m.tolerance in TOLERANCE_CLASSES and m.definition and m.unit
        assert m.column or m.json_key
    with pytest.raises(ValueError, match="tolerance class must be one of"):
        Metric("x", "cell", "bits", "pure", "x", None, "loose", "d")
    with pytest.raises(KeyError, match="no metric declared for column 'nope'"):
        metric("pure", "nope")


def test_the_extended_pure_csv_round_trips() -> None:
    extra = tuple((c, None if "gap" in c else (True if "copy" in c else 0.5)) for c in ISSUE_PURE)
    extra = tuple((c, 3 if c == "answer_rank" else v) for c, v in extra)
    row = CsvRow(0, 4, "⟨NEXT⟩", 1.5, (("a", 0.5), ("b", 0.25)), 0.25, (False,) * 3, extra)
    data = dump_csv_bytes("pure", [row])
    back = parse_csv_bytes(data, "x.csv")
    assert back.rows == [row]
    assert back.header.endswith(",is_answer," + ",".join(ISSUE_PURE))


def test_the_sidecars_round_trip() -> None:
    row = {c: 0.25 for c in columns("rawlens")}
    row.update(layer=0, top1_token_id_raw=3, top1_token_id_norm=4, top1_token_str_raw=" a,b")
    row.update(top1_token_str_norm='"q"', answer_rank_raw=2, answer_rank_norm=1)
    row.update({"norm_only_semantics": True, "topk_jaccard_consecutive@50": None})
    table = parse_sidecar_bytes(dump_rawlens_bytes([row]), "r.csv")
    assert table.kind == "rawlens" and table.rows == [row]
    milestones = {m.name: None for m in declared("milestones")}
    milestones.update(first_rank_le_1=3, L_copy_soft=2, L_copy_soft_k=1)
    back = parse_sidecar_bytes(dump_milestones_bytes(milestones), "m.csv")
    assert back.kind == "milestones" and back.milestones() == milestones


def test_the_original_csv_headers_are_built_from_the_declarations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Today's records and pure headers come from the table (the original's bytes: the
    published-run tests pin them), so a declaration renamed or moved moves the header."""
    from lenscheck import schema
    from lenscheck.metrics import table

    records = [str(m.column) for m in declared("records", "original")]
    assert records == ["layer", "pos", "token", "entropy", "topN", "probN", "rest_mass"]
    assert schema.csv_header("records", 2) == [
        "layer", "pos", "token", "entropy", "top1", "prob1", "top2", "prob2", "rest_mass"
    ]  # fmt: skip
    assert tuple(str(m.column) for m in declared("pure", "original")) == schema.FLAG_COLUMNS
    renamed = tuple(
        Metric(**{**m.__dict__, "column": "H"}) if m.column == "entropy" else m
        for m in table.METRICS
    )
    monkeypatch.setattr(table, "METRICS", renamed)
    assert schema.csv_header("records", 1) == [
        "layer",
        "pos",
        "token",
        "H",
        "top1",
        "prob1",
        "rest_mass",
    ]


def test_the_golden_pins_the_declared_flags_and_collapse_layers() -> None:
    """The golden entry's flags are the pure CSV's declared flag columns and its collapse
    block the declared layer-valued measurements of the original JSON, in table order: a
    flag or collapse layer declared in the table is pinned without a second list."""
    from lenscheck.golden.payload import prompt_payload

    flags = [str(m.column) for m in declared("pure", "original")]
    layers = [
        m.name for m in declared("json", "original") if m.scope == "prompt" and m.kind == "int"
    ]
    assert layers == ["L_copy", "L_copy_H", "L_semantic", "delta_layers"]
    pure = [
        {"layer": n, "entropy": 1.5, "topk": [["a", 0.5], ["b", 0.25]], **dict.fromkeys(flags, n)}
        for n in range(2)
    ]
    diag = {"L_copy": 1, "L_copy_H": None, "L_semantic": 3, "delta_layers": 2}
    doc = {
        "prompt": {"context_prompt": "p", "ground_truth": "a"},
        "test_prompts": [],
        "temperature_exploration": [],
        "diagnostics": diag,
        "final_prediction": {"entropy": 1.0, "topk": [["a", 0.5]]},
    }
    entry = prompt_payload(doc, None, pure)
    assert entry["flags"] == {f: [0, 1] for f in flags}
    assert {k: v for k, v in entry["collapse"].items() if k in layers} == diag
    assert [k for k in entry["collapse"] if k != "embedding_echo"] == layers


def _records_doc(value: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A one-prompt JSON and its 2 layers x 2 positions of record dicts, each with a
    ``z_max`` of ``value(layer, pos)``."""
    records = [
        {
            "layer": layer,
            "pos": pos,
            "token": f"t{pos}",
            "entropy": 1.5 + layer,
            "topk": [["a", 0.5], ["b", 0.25]],
            "z_max": value(layer, pos),
        }
        for layer in range(2)
        for pos in range(2)
    ]
    doc = {
        "prompt": {"context_prompt": "p", "ground_truth": "a"},
        "test_prompts": [],
        "temperature_exploration": [],
        "diagnostics": {},
        "final_prediction": {"entropy": 1.0, "topk": [["a", 0.5]]},
    }
    return doc, records


def test_a_cell_measurement_declared_in_the_table_is_pinned_and_compared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The records grid and the next-token trajectory pin each records column the table
    declares as a ``value`` (today only ``entropy``), by its tolerance class: declaring a
    new cell measurement puts it in the golden and its comparison with no second list."""
    from lenscheck.golden.compare import compare_golden
    from lenscheck.golden.payload import prompt_payload
    from lenscheck.golden.tolerances import DEFAULT_TOLERANCES
    from lenscheck.metrics import table

    assert [m.name for m in table.grid_metrics()] == ["entropy"]
    assert {m.golden for m in declared("records", "original")} == {
        "value",
        "topk",
        "index",
        "derived",
    }
    z_max = table._m(
        "z_max", "cell", "logit", "records", "logit", "the largest lens logit", schema="original"
    )
    monkeypatch.setattr(table, "METRICS", (*table.METRICS[:4], z_max, *table.METRICS[4:]))
    assert [m.name for m in table.grid_metrics()] == ["entropy", "z_max"]

    doc, records = _records_doc(lambda layer, pos: 10.0 * layer + pos + 1 / 3)
    pure = [{**r, **dict.fromkeys(FLAG_COLUMNS, False)} for r in records if r["pos"] == 1]
    entry = prompt_payload(doc, records, pure)
    assert list(entry["records"]) == ["top1", "p_top1", "p_top2", "entropy", "z_max", "topk"]
    assert entry["records"]["z_max"] == [[0.33333333, 1.3333333], [10.333333, 11.333333]]
    assert entry["next_token"]["z_max"] == [1.3333333, 11.333333]

    fp32 = DEFAULT_TOLERANCES["cpu-float32"]
    bound = table.class_tolerance("logit", fp32)
    moved = copy.deepcopy(entry)
    moved["records"]["z_max"][1][0] += 2 * bound
    moved["next_token"]["z_max"][0] += bound / 2  # within the logit class' tolerance
    as_doc = lambda e: {"prompts": {"p": e}, "facts": {}}  # noqa: E731
    report = compare_golden(as_doc(entry), as_doc(moved), fp32, sections=("records", "trajectory"))
    assert [(d.section, d.metric, d.layer, d.pos) for d in report.drifts] == [
        ("records", "z_max", 1, 0)
    ]
    assert report.drifts[0].tolerance == bound
    assert report.max_delta["trajectory"] == pytest.approx(bound / 2)
