"""lenscheck.device: the dtype table, Gemma's bf16, unembed promotion, device choice."""

from __future__ import annotations

import pytest
import torch

from lenscheck.device import choose_dtype, parse_dtype, resolve_device, should_auto_promote_unembed


@pytest.mark.parametrize(
    ("device", "model_id", "dtype"),
    [
        ("cpu", "meta-llama/Meta-Llama-3-8B", torch.float32),
        ("cpu", "google/gemma-2-9b", torch.float32),  # the Gemma override is cuda only
        ("cuda", "meta-llama/Meta-Llama-3-8B", torch.float16),
        ("cuda", "mistralai/Mistral-7B-v0.1", torch.float16),
        ("cuda", "google/gemma-2-9b", torch.bfloat16),
        ("cuda", "google/Gemma-2-27B", torch.bfloat16),  # case-insensitive
        ("cuda:1", "google/gemma-2-9b", torch.bfloat16),
        ("cuda:0", "Qwen/Qwen3-8B", torch.float16),
        ("mps", "meta-llama/Meta-Llama-3-8B", torch.float16),
        ("mps", "google/gemma-2-9b", torch.float16),  # no bf16 override on mps
    ],
)
def test_dtype_table(device: str, model_id: str, dtype: torch.dtype) -> None:
    assert choose_dtype(device, model_id) == dtype


@pytest.mark.parametrize("device", ["tpu", "gpu", "CUDA", "", "auto", "cpu0", "xla:0"])
def test_unknown_device_is_refused(device: str) -> None:
    with pytest.raises(ValueError, match="device must be one of") as info:
        choose_dtype(device, "meta-llama/Meta-Llama-3-8B")
    assert repr(device) in str(info.value)


def test_non_string_device_is_refused() -> None:
    with pytest.raises(ValueError, match="device must be one of"):
        choose_dtype(None, "gpt2")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dtype", "promote"),
    [
        (torch.float32, True),
        (torch.float16, False),
        (torch.bfloat16, False),
        (torch.float64, False),
        (torch.int8, False),
    ],
)
def test_auto_promotion_only_for_fp32(dtype: torch.dtype, promote: bool) -> None:
    assert should_auto_promote_unembed(dtype) is promote


@pytest.mark.parametrize(
    ("device", "model_id", "promote"),
    [
        ("cpu", "gpt2", True),
        ("cuda", "gpt2", False),
        ("cuda", "google/gemma-2-9b", False),
        ("mps", "gpt2", False),
    ],
)
def test_policy_end_to_end(device: str, model_id: str, promote: bool) -> None:
    assert should_auto_promote_unembed(choose_dtype(device, model_id)) is promote


@pytest.mark.parametrize(
    ("text", "dtype"),
    [
        ("auto", None),
        ("float32", torch.float32),
        ("fp32", torch.float32),
        ("float", torch.float32),
        ("torch.float16", torch.float16),
        ("fp16", torch.float16),
        ("half", torch.float16),
        ("bf16", torch.bfloat16),
        (" bfloat16 ", torch.bfloat16),
        ("float64", torch.float64),
    ],
)
def test_parse_dtype(text: str, dtype: torch.dtype | None) -> None:
    assert parse_dtype(text) == dtype


@pytest.mark.parametrize("text", ["int8", "fp8", "", "float32x", "q4"])
def test_parse_dtype_rejects_unknown(text: str) -> None:
    with pytest.raises(ValueError, match="dtype must be auto, float32, float16 or bfloat16"):
        parse_dtype(text)


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from lenscheck.device import DeviceUnavailableError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    for missing in ("cuda", "cuda:1", "mps"):  # never the CPU instead
        with pytest.raises(DeviceUnavailableError, match=f"device '{missing}' was requested"):
            resolve_device(missing)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"
    assert resolve_device("mps") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    for absent in ("cuda:2", "cuda:x"):  # an index torch does not see is missing too
        with pytest.raises(DeviceUnavailableError, match="2 CUDA device"):
            resolve_device(absent)
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
