"""The original pipeline's published files are the schema's truth: read and re-write them.

Looks for ``reference/published-run/`` under ``$LENSCHECK_SHARED_DIR`` or the ``shared``
directory next to the repository; the module is skipped when neither has it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _lens_fixtures import ORIGINAL_TOP_LEVEL_KEYS

from lenscheck.artifacts import dump_json_bytes
from lenscheck.collapse import is_semantic_top1, summarize_collapse
from lenscheck.prompts import CONTEXT_PROMPT, TEST_PROMPTS
from lenscheck.schema import FLAG_COLUMNS, dump_csv_bytes, read_csv, validate_csv


def _shared_dir() -> Path:
    env = os.environ.get("LENSCHECK_SHARED_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


REFERENCE = _shared_dir() / "reference" / "published-run"
if not REFERENCE.is_dir():
    pytest.skip(
        f"published reference run not found at {REFERENCE} (set LENSCHECK_SHARED_DIR to the "
        "directory holding reference/published-run/)",
        allow_module_level=True,
    )

CSV_FILES = sorted(REFERENCE.glob("*.csv"))
JSON_FILES = sorted(REFERENCE.glob("*.json"))


def test_reference_run_is_complete() -> None:
    assert len(JSON_FILES) >= 1
    for js in JSON_FILES:
        stem = js.name[len("output-") : -len(".json")]
        assert (REFERENCE / f"output-{stem}-pure-next-token.csv") in CSV_FILES


@pytest.mark.parametrize("path", CSV_FILES, ids=lambda p: p.name)
def test_csv_validates_and_round_trips_byte_identically(path: Path) -> None:
    assert validate_csv(path) == []
    table = read_csv(path)
    expected_kind = "pure" if path.name.endswith("-pure-next-token.csv") else "records"
    assert (table.kind, table.top_k_verbose) == (expected_kind, 20)
    assert len(table.rows) > 0
    assert dump_csv_bytes(table.kind, table.rows, table.top_k_verbose) == path.read_bytes()


@pytest.mark.parametrize(
    "path", sorted(REFERENCE.glob("*-pure-next-token.csv")), ids=lambda p: p.name
)
def test_pure_csv_follows_the_collapse_rules(path: Path) -> None:
    rows = read_csv(path).rows
    assert [r.layer for r in rows] == list(range(len(rows)))  # one row per layer, 0..L
    assert {r.token for r in rows} == {"⟨NEXT⟩"} and len({r.pos for r in rows}) == 1
    for r in rows:
        flags = dict(zip(FLAG_COLUMNS, r.flags))
        (top1, p1), (_, p2) = r.topk[0], r.topk[1]
        assert flags["entropy_collapse"] is (r.entropy <= 1.0)
        assert flags["is_answer"] is is_semantic_top1(top1, "Berlin")
        if r.entropy < 1.0:
            assert flags["copy_collapse"]  # the entropy fallback
        if flags["copy_collapse"]:
            assert (p1 > 0.90 and p1 - p2 > 0.05) or r.entropy < 1.0
    js = path.with_name(path.name.replace("-pure-next-token.csv", ".json"))
    diagnostics = json.loads(js.read_text(encoding="utf-8"))["diagnostics"]
    summary = summarize_collapse(
        {"layer": r.layer, **dict(zip(FLAG_COLUMNS, r.flags))} for r in rows
    )
    assert summary == {k: diagnostics[k] for k in summary}


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.name)
def test_json_keys_and_byte_identical_rewrite(path: Path) -> None:
    raw = path.read_bytes()
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    assert list(data) == ORIGINAL_TOP_LEVEL_KEYS
    assert dump_json_bytes(data) == raw


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.name)
def test_json_content_matches_the_fixed_prompts(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["diagnostics"]["context_prompt"] == CONTEXT_PROMPT
    assert [t["prompt"] for t in data["test_prompts"]] == list(TEST_PROMPTS)
    stats = data["model_stats"]
    assert {"num_layers", "d_model", "n_heads", "d_vocab", "n_ctx"} <= set(stats)
    pure = read_csv(path.with_name(path.name.replace(".json", "-pure-next-token.csv")))
    assert len(pure.rows) == stats["num_layers"] + 1  # embeddings + every block
