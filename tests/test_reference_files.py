"""The original pipeline's published files are the schema's truth: read and re-write them.

Runs on two sets: the one-model copy vendored in ``tests/data/published-run/`` (always, so
every CI checks byte compatibility) and, where it exists, the full published run under
``$LENSCHECK_SHARED_DIR`` or the ``shared`` directory next to the repository (see
``tests/_shared.py``); only the latter's tests are skipped when it is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _lens_fixtures import ORIGINAL_TOP_LEVEL_KEYS
from _shared import PUBLISHED_DIR, VENDORED_DIR

from lenscheck.artifacts import dump_json_bytes
from lenscheck.collapse import is_semantic_top1, summarize_collapse
from lenscheck.prompts import CONTEXT_PROMPT, TEST_PROMPTS
from lenscheck.schema import FLAG_COLUMNS, dump_csv_bytes, read_csv, validate_csv

#: (label, folder) of each reference set this run has.
SETS = [("vendored", VENDORED_DIR)]
if PUBLISHED_DIR.is_dir():
    SETS.append(("shared", PUBLISHED_DIR))
NO_SHARED = pytest.mark.skipif(
    not PUBLISHED_DIR.is_dir(),
    reason=f"full published run not found at {PUBLISHED_DIR} (set LENSCHECK_SHARED_DIR to "
    "the directory holding reference/published-run/); the vendored copy was checked",
)


def _files(pattern: str) -> list[pytest.ParameterSet]:
    return [
        pytest.param(path, id=f"{label}/{path.name}")
        for label, folder in SETS
        for path in sorted(folder.glob(pattern))
    ]


CSV_FILES = _files("*.csv")
JSON_FILES = _files("*.json")
PURE_FILES = _files("*-pure-next-token.csv")


def test_vendored_copy_is_one_complete_model() -> None:
    assert sorted(p.name for p in VENDORED_DIR.glob("output-*")) == [
        "output-Meta-Llama-3-8B-pure-next-token.csv",
        "output-Meta-Llama-3-8B-records.csv",
        "output-Meta-Llama-3-8B.json",
    ]


@NO_SHARED
def test_vendored_copy_is_identical_to_the_published_files() -> None:
    for path in VENDORED_DIR.glob("output-*"):
        assert path.read_bytes() == (PUBLISHED_DIR / path.name).read_bytes(), path.name


@pytest.mark.parametrize("folder", [f for _, f in SETS], ids=[label for label, _ in SETS])
def test_reference_run_is_complete(folder: Path) -> None:
    jsons = sorted(folder.glob("*.json"))
    assert len(jsons) >= 1
    for js in jsons:
        stem = js.name[len("output-") : -len(".json")]
        assert (folder / f"output-{stem}-pure-next-token.csv").is_file()


@pytest.mark.parametrize("path", CSV_FILES)
def test_csv_validates_and_round_trips_byte_identically(path: Path) -> None:
    assert validate_csv(path) == []
    table = read_csv(path)
    expected_kind = "pure" if path.name.endswith("-pure-next-token.csv") else "records"
    assert (table.kind, table.top_k_verbose) == (expected_kind, 20)
    assert len(table.rows) > 0
    assert dump_csv_bytes(table.kind, table.rows, table.top_k_verbose) == path.read_bytes()


@pytest.mark.parametrize("path", PURE_FILES)
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


@pytest.mark.parametrize("path", JSON_FILES)
def test_json_keys_and_byte_identical_rewrite(path: Path) -> None:
    raw = path.read_bytes()
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    assert list(data) == ORIGINAL_TOP_LEVEL_KEYS
    assert dump_json_bytes(data) == raw


@pytest.mark.parametrize("path", JSON_FILES)
def test_json_content_matches_the_fixed_prompts(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["diagnostics"]["context_prompt"] == CONTEXT_PROMPT
    assert [t["prompt"] for t in data["test_prompts"]] == list(TEST_PROMPTS)
    stats = data["model_stats"]
    assert {"num_layers", "d_model", "n_heads", "d_vocab", "n_ctx"} <= set(stats)
    pure = read_csv(path.with_name(path.name.replace(".json", "-pure-next-token.csv")))
    assert len(pure.rows) == stats["num_layers"] + 1  # embeddings + every block
