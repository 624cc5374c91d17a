"""load_tokenizer: a local folder's tokenizer loads once while its files stay byte-identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lenscheck.backends import hf
from lenscheck.models import resolve_model


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every real tokenizer load, by path; the cache starts empty."""
    monkeypatch.setattr(hf, "_TOKENIZERS", type(hf._TOKENIZERS)())
    seen: list[str] = []
    real = hf.AutoTokenizer.from_pretrained

    def counting(path: str, **kwargs: Any) -> Any:
        seen.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(hf.AutoTokenizer, "from_pretrained", counting)
    return seen


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    src = Path(resolve_model("synthetic-llama").path)
    dst = tmp_path / "model"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    return dst


def test_a_second_load_reuses_the_first_as_its_own_copy(loads: list[str], folder: Path) -> None:
    first = hf.load_tokenizer(str(folder), trust_remote_code=False)
    second = hf.load_tokenizer(str(folder), trust_remote_code=False)
    assert loads == [str(folder)]
    assert second is not first
    assert second("The capital of")["input_ids"] == first("The capital of")["input_ids"]
    second.padding_side = "left" if first.padding_side == "right" else "right"
    third = hf.load_tokenizer(str(folder), trust_remote_code=False)
    assert third.padding_side == first.padding_side


def test_changed_tokenizer_files_load_again(loads: list[str], folder: Path) -> None:
    hf.load_tokenizer(str(folder), trust_remote_code=False)
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    data["model_max_length"] = 77
    config.write_text(json.dumps(data), encoding="utf-8")
    again = hf.load_tokenizer(str(folder), trust_remote_code=False)
    assert loads == [str(folder), str(folder)]
    assert again.model_max_length == 77


def test_a_copy_of_the_folder_elsewhere_shares_the_tokenizer(
    loads: list[str], folder: Path, tmp_path: Path
) -> None:
    """Keyed by bytes, not by path: a moved or copied checkpoint reuses it."""
    hf.load_tokenizer(str(folder), trust_remote_code=False)
    moved = tmp_path / "elsewhere"
    shutil.copytree(folder, moved)
    hf.load_tokenizer(str(moved), trust_remote_code=False)
    assert loads == [str(folder)]


def test_remote_code_and_hub_ids_always_load(loads: list[str], folder: Path) -> None:
    hf.load_tokenizer(str(folder), trust_remote_code=True)
    hf.load_tokenizer(str(folder), trust_remote_code=True)
    assert loads == [str(folder)] * 2
    assert hf._tokenizer_key(Path("org/not-a-local-folder")) is None


def test_only_a_few_are_kept(loads: list[str], folder: Path, tmp_path: Path) -> None:
    folders = []
    for n in range(hf._TOKENIZERS_KEPT + 1):
        f = tmp_path / f"m{n}"
        shutil.copytree(folder, f)
        cfg = f / "tokenizer_config.json"
        data = json.loads(cfg.read_text(encoding="utf-8"))
        data["model_max_length"] = 100 + n
        cfg.write_text(json.dumps(data), encoding="utf-8")
        folders.append(f)
        hf.load_tokenizer(str(f), trust_remote_code=False)
    assert len(hf._TOKENIZERS) == hf._TOKENIZERS_KEPT
    hf.load_tokenizer(str(folders[0]), trust_remote_code=False)  # the oldest went first
    assert loads == [str(f) for f in folders] + [str(folders[0])]
