"""lenscheck.golden.store: golden files on disk, the layout, and errors that name the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lenscheck.golden.payload import FORMAT_VERSION
from lenscheck.golden.store import (
    STANDARD_SETTINGS,
    GoldenFormatError,
    dumps_golden,
    find_golden,
    golden_dir,
    golden_stem,
    loads_golden,
    read_golden,
)

COMMITTED = Path(__file__).resolve().parents[1] / "golden"
REQUIRED = (
    "format_version",
    "model",
    "suite",
    "class",
    "decode_norm",
    "settings",
    "environment",
    "schema",
    "model_stats",
    "facts",
    "prompts",
)
FIX = "re-bless it with: pytest --lens-models=synthetic-gpt2 --snapshot-update"
# Not the `<class>.obtained.json` a drifting run leaves beside a golden (git-ignored).
COMMITTED_FILES = sorted(
    p for p in COMMITTED.glob("**/*.json") if not p.name.endswith(".obtained.json")
)


@pytest.mark.parametrize("path", COMMITTED_FILES, ids=lambda p: str(p.relative_to(COMMITTED)))
def test_committed_goldens_load_and_round_trip_byte_for_byte(path: Path) -> None:
    data = read_golden(path)
    model = path.relative_to(COMMITTED).parts[0]
    suite = "default" if path.parent.name == model else path.parent.name
    cls = path.stem.partition(".")[0]
    assert (data["format_version"], data["model"], data["suite"], data["class"]) == (
        FORMAT_VERSION,
        model,
        suite,
        cls,
    )
    # The file is named after the settings it was blessed under, and says them.
    assert golden_stem(cls, data["settings"]) == path.stem
    assert data["decode_norm"] == data["settings"]["decode_norm"]
    assert dumps_golden(data) == path.read_text(encoding="utf-8")  # the committed form


def test_committed_goldens_cover_the_default_and_the_example_suite() -> None:
    models = {"embedded"} | {
        f"synthetic-{f}" for f in ("gpt2", "llama", "gemma3", "neox", "opt-postnorm")
    }
    found = {str(p.relative_to(COMMITTED)) for p in COMMITTED_FILES}
    assert {f"{m}/cpu-float32.json" for m in models} <= found
    assert {f"{m}/capitals/cpu-float32.json" for m in models} <= found
    # The original pipeline's conventions stay gated too (--lens-preset=original).
    assert {f"{m}/cpu-float32.original.json" for m in models} <= found
    capitals = read_golden(COMMITTED / "embedded" / "capitals" / "cpu-float32.json")
    assert len(capitals["prompts"]) == 9


def test_layout_default_suite_in_the_model_folder_others_below(tmp_path: Path) -> None:
    assert golden_dir(tmp_path, "embedded", "default") == tmp_path / "embedded"
    assert golden_dir(tmp_path, "embedded", "capitals") == tmp_path / "embedded" / "capitals"
    assert golden_stem("cpu-float32", STANDARD_SETTINGS) == "cpu-float32"
    assert golden_stem("cpu-float32", {}) == "cpu-float32"  # unnamed settings: standard
    assert golden_stem("cuda-bfloat16", {"decode_norm": "raw"}) == "cuda-bfloat16.decode-raw"
    original = {"decode_norm": "next-ln1", "bos": "always", "schema": "original"}
    assert golden_stem("cpu-float32", original) == "cpu-float32.original"
    assert golden_stem("cpu-float32", {**original, "bos": "auto"}) == (
        "cpu-float32.decode-next-ln1.schema-original"
    )
    assert golden_stem("cpu-float32", {"bos": "never", "chat_template": True}) == (
        "cpu-float32.bos-never.chat"
    )


def test_dumps_is_diff_friendly(golden: dict[str, Any]) -> None:
    text = dumps_golden(golden)
    assert text.startswith(
        f'{{\n "format_version": {FORMAT_VERSION},\n "model": "synthetic-llama",\n'
    )
    assert text.endswith("}\n")
    lines = text.splitlines()
    # One layer of a records metric per line: a change at one layer is a one-line diff.
    entropy_rows = [line for line in lines if line.startswith("     [") and "]" in line]
    assert len(entropy_rows) >= 4 * 4  # 4 metrics x 4 layers
    assert '    "layer": [0, 1, 2, 3],' in lines
    assert loads_golden(text) == golden
    assert list(loads_golden(text)) == list(golden)  # key order kept


def test_dumps_keeps_unicode_readable_and_escapes_controls(golden: dict[str, Any]) -> None:
    golden["prompts"]["capital-de"]["tokenization"]["tokens"][0] = "Ä ⟨NEXT⟩ ünïcode \x00"
    text = dumps_golden(golden)
    assert "Ä ⟨NEXT⟩ ünïcode \\u0000" in text
    assert loads_golden(text) == golden


def test_dumps_refuses_nan(golden: dict[str, Any]) -> None:
    golden["prompts"]["capital-de"]["next_token"]["entropy"][0] = float("nan")
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps_golden(golden)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"format_version": 2, "model": ', "is not valid JSON (Expecting value: line 1"),
        ("", "is not valid JSON"),
        ("[1, 2]", "holds list, not an object"),
        ('"golden"', "holds str, not an object"),
        ('{"model": "m"}', "has no integer format_version"),
        ('{"format_version": "2"}', "has no integer format_version"),
    ],
)
def test_unreadable_documents(text: str, expected: str) -> None:
    with pytest.raises(GoldenFormatError) as info:
        loads_golden(text, source="golden/synthetic-gpt2/cpu-float32.json", fix=FIX)
    message = str(info.value)
    assert message.startswith("golden file golden/synthetic-gpt2/cpu-float32.json ")
    assert expected in message
    assert message.endswith(FIX)
    assert isinstance(info.value, ValueError)


def test_newer_format_says_upgrade(golden: dict[str, Any]) -> None:
    golden["format_version"] = FORMAT_VERSION + 97
    with pytest.raises(GoldenFormatError) as info:
        loads_golden(json.dumps(golden), source="g.json", fix=FIX)
    assert str(info.value) == (
        f"golden file g.json has format {FORMAT_VERSION + 97}, newer than this lenscheck reads "
        f"({FORMAT_VERSION}); "
        f"upgrade lenscheck (pip install -U lenscheck) or {FIX}"
    )


def test_format_1_says_re_bless(golden: dict[str, Any]) -> None:
    golden["format_version"] = 1
    with pytest.raises(GoldenFormatError) as info:
        loads_golden(json.dumps(golden), source="g.json", fix=FIX)
    assert str(info.value) == (
        f"golden file g.json has format 1, older than the current {FORMAT_VERSION}, which pins "
        "every top-k pair and the extended schema's measurements (format 4) and the settings a "
        "golden was blessed under (3). Since format 3 lenscheck's defaults "
        "are the model's own conventions (the final-norm lens, the tokenizer's own BOS); a "
        "golden meant to keep the original pipeline's (next-ln1, BOS always) is re-blessed "
        f"with --lens-preset=original. {FIX}"
    )


def test_the_default_fix_names_the_flag() -> None:
    with pytest.raises(GoldenFormatError, match="re-bless it with: pytest --lens-models=MODEL "):
        loads_golden("{}")


def test_missing_keys_are_all_named(golden: dict[str, Any]) -> None:
    del golden["prompts"], golden["facts"]
    with pytest.raises(GoldenFormatError) as info:
        loads_golden(json.dumps(golden), source="g.json", fix=FIX)
    assert str(info.value) == f"golden file g.json lacks facts, prompts; {FIX}"


@pytest.mark.parametrize("key", REQUIRED[1:])
def test_each_required_key(golden: dict[str, Any], key: str) -> None:
    del golden[key]
    with pytest.raises(GoldenFormatError, match=f"lacks {key};"):
        loads_golden(json.dumps(golden))


def test_read_golden_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "synthetic-gpt2" / "cpu-float32.json"
    path.parent.mkdir()
    path.write_text("{oops", encoding="utf-8")
    with pytest.raises(GoldenFormatError, match=f"^golden file {path} is not valid JSON"):
        read_golden(path, fix=FIX)


def _touch(folder: Path, *stems: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        (folder / f"{stem}.json").write_text("{}", encoding="utf-8")


def test_find_golden_prefers_own_class(tmp_path: Path) -> None:
    _touch(tmp_path, "cpu-float32", "cuda-float16", "cpu-bfloat16")
    assert find_golden(tmp_path, "cuda-float16") == tmp_path / "cuda-float16.json"
    assert find_golden(tmp_path, "cpu-float32") == tmp_path / "cpu-float32.json"


def test_find_golden_falls_back_to_cpu_float32_then_by_name(tmp_path: Path) -> None:
    _touch(tmp_path, "cuda-float16", "cpu-float32", "a-float16")
    assert find_golden(tmp_path, "mps-float16") == tmp_path / "cpu-float32.json"
    (tmp_path / "cpu-float32.json").unlink()
    assert find_golden(tmp_path, "mps-float16") == tmp_path / "a-float16.json"


def test_find_golden_never_takes_an_obtained_file_or_other_settings(
    tmp_path: Path,
) -> None:
    _touch(tmp_path, "cpu-float32.obtained", "cpu-float32.decode-raw", "cuda-float16.original")
    assert find_golden(tmp_path, "cpu-float32") is None
    raw = {"decode_norm": "raw"}
    assert find_golden(tmp_path, "cuda-float16", raw) == tmp_path / "cpu-float32.decode-raw.json"
    original = {"decode_norm": "next-ln1", "bos": "always", "schema": "original"}
    assert find_golden(tmp_path, "cpu-float32", original) == (
        tmp_path / "cuda-float16.original.json"
    )
    _touch(tmp_path, "cuda-float16")
    assert find_golden(tmp_path, "cpu-float32") == tmp_path / "cuda-float16.json"
