"""lenscheck.golden.store: golden files on disk, and errors that name the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lenscheck.golden.payload import FORMAT_VERSION
from lenscheck.golden.store import (
    GoldenFormatError,
    dumps_golden,
    find_golden,
    loads_golden,
    read_golden,
)

COMMITTED = Path(__file__).resolve().parents[1] / "golden"
REQUIRED = (
    "format_version",
    "model",
    "class",
    "environment",
    "schema",
    "model_stats",
    "tokenization",
    "collapse",
    "final_prediction",
    "trajectory",
)
FIX = "regenerate with: pytest --lens-models=synthetic-gpt2 --snapshot-update"


@pytest.fixture
def doc() -> dict[str, Any]:
    return dict(json.loads((COMMITTED / "synthetic-gpt2" / "cpu-float32.json").read_text()))


@pytest.mark.parametrize("model", sorted(p.name for p in COMMITTED.iterdir() if p.is_dir()))
def test_committed_goldens_load_and_round_trip_byte_for_byte(model: str) -> None:
    path = COMMITTED / model / "cpu-float32.json"
    data = read_golden(path, model=model)
    assert (data["format_version"], data["model"], data["class"]) == (1, model, "cpu-float32")
    assert dumps_golden(data) == path.read_text(encoding="utf-8")  # the committed form


def test_round_trip(doc: dict[str, Any]) -> None:
    doc["tokenization"]["tokens"].append("Ä ⟨NEXT⟩ ünïcode")
    text = dumps_golden(doc)
    assert text.endswith("}\n") and text.startswith('{\n "format_version": 1,\n')
    assert "⟨NEXT⟩ ünïcode" in text  # readable, not \\u-escaped
    assert loads_golden(text) == doc
    assert dumps_golden(loads_golden(text)) == text
    assert list(loads_golden(text)) == list(doc)  # key order kept: diff-friendly


def test_dumps_refuses_nan(doc: dict[str, Any]) -> None:
    doc["trajectory"][0]["entropy"] = float("nan")
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps_golden(doc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"format_version": 1, "model": ', "is not valid JSON (Expecting value: line 1"),
        ("", "is not valid JSON"),
        ("[1, 2]", "holds list, not an object"),
        ('"golden"', "holds str, not an object"),
        ('{"model": "m"}', "has no integer format_version"),
        ('{"format_version": "1"}', "has no integer format_version"),
    ],
)
def test_unreadable_documents(text: str, expected: str) -> None:
    with pytest.raises(GoldenFormatError) as info:
        loads_golden(text, source="golden/synthetic-gpt2/cpu-float32.json", model="synthetic-gpt2")
    message = str(info.value)
    assert message.startswith("golden file golden/synthetic-gpt2/cpu-float32.json ")
    assert expected in message
    assert message.endswith(FIX)
    assert isinstance(info.value, ValueError)


def test_newer_format_says_upgrade(doc: dict[str, Any]) -> None:
    doc["format_version"] = FORMAT_VERSION + 98
    with pytest.raises(GoldenFormatError) as info:
        loads_golden(json.dumps(doc), source="g.json", model="synthetic-gpt2")
    assert str(info.value) == (
        f"golden file g.json has format 99, newer than this lenscheck reads ({FORMAT_VERSION}); "
        f"upgrade lenscheck (pip install -U lenscheck) or {FIX}"
    )


def test_older_format_says_regenerate(doc: dict[str, Any]) -> None:
    doc["format_version"] = 0
    with pytest.raises(GoldenFormatError) as info:
        loads_golden(json.dumps(doc), source="g.json", model="synthetic-gpt2")
    assert str(info.value) == (
        f"golden file g.json has format 0, older than the current {FORMAT_VERSION}; {FIX}"
    )


def test_missing_keys_are_all_named(doc: dict[str, Any]) -> None:
    del doc["trajectory"], doc["collapse"]
    with pytest.raises(GoldenFormatError) as info:
        loads_golden(json.dumps(doc), source="g.json", model="synthetic-gpt2")
    assert str(info.value) == f"golden file g.json lacks collapse, trajectory; {FIX}"


@pytest.mark.parametrize("key", REQUIRED[1:])
def test_each_required_key(doc: dict[str, Any], key: str) -> None:
    del doc[key]
    with pytest.raises(GoldenFormatError, match=f"lacks {key};"):
        loads_golden(json.dumps(doc))


def test_read_golden_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "synthetic-gpt2" / "cpu-float32.json"
    path.parent.mkdir()
    path.write_text("{oops", encoding="utf-8")
    with pytest.raises(GoldenFormatError, match=f"^golden file {path} is not valid JSON"):
        read_golden(path, model="synthetic-gpt2")


def _touch(folder: Path, *classes: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for cls in classes:
        (folder / f"{cls}.json").write_text("{}", encoding="utf-8")


def test_find_golden_prefers_own_class(tmp_path: Path) -> None:
    _touch(tmp_path, "cpu-float32", "cuda-float16", "cpu-bfloat16")
    assert find_golden(tmp_path, "cuda-float16") == tmp_path / "cuda-float16.json"
    assert find_golden(tmp_path, "cpu-float32") == tmp_path / "cpu-float32.json"


def test_find_golden_falls_back_to_cpu_float32_then_by_name(tmp_path: Path) -> None:
    _touch(tmp_path, "cuda-float16", "cpu-float32", "a-float16")
    assert find_golden(tmp_path, "mps-float16") == tmp_path / "cpu-float32.json"
    (tmp_path / "cpu-float32.json").unlink()
    assert find_golden(tmp_path, "mps-float16") == tmp_path / "a-float16.json"


def test_find_golden_none(tmp_path: Path) -> None:
    assert find_golden(tmp_path / "missing", "cpu-float32") is None
    _touch(tmp_path)
    (tmp_path / "notes.txt").write_text("not a golden", encoding="utf-8")
    assert find_golden(tmp_path, "cpu-float32") is None
