"""Tiny synthetic models: shape, determinism, non-trivial norms, peaked output, TL bridge."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from lenscheck.models.embedded import ensure_embedded_checkpoint
from lenscheck.models.synthetic import (
    SYNTHETIC_ALIASES,
    SYNTHETIC_VERSION,
    TL_BRIDGE_UNSUPPORTED,
    build_synthetic_checkpoint,
    ensure_synthetic_checkpoint,
    synthetic_checkpoint_dir,
)

PROMPT = "Give the city name only, plain text. The capital of Germany is called simply"
VOCAB = 49152


@pytest.fixture(scope="module")
def tokenizer_dir() -> Path:
    """The embedded checkpoint, whose tokenizer the synthetic models share (real cache)."""
    return ensure_embedded_checkpoint()


@pytest.fixture(scope="module")
def prompt_ids(tokenizer_dir: Path) -> Any:
    """BOS + the fixed prompt, 17 tokens."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    ids = [tokenizer.bos_token_id, *tokenizer(PROMPT, add_special_tokens=False)["input_ids"]]
    return torch.tensor([ids])


def _load(alias: str) -> Any:
    """Load ``alias`` from the real cache (building it on first use)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(ensure_synthetic_checkpoint(alias))).eval()


def _is_norm(module: Any) -> bool:
    import torch

    return isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith(
        ("RMSNorm", "LayerNorm")
    )


def test_aliases_cover_every_family() -> None:
    assert SYNTHETIC_ALIASES == (
        "synthetic-gpt2",
        "synthetic-llama",
        "synthetic-gemma3",
        "synthetic-neox",
        "synthetic-opt-postnorm",
    )
    assert TL_BRIDGE_UNSUPPORTED.issubset(SYNTHETIC_ALIASES)


def test_unknown_alias_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="synthetic-gpt2"):
        ensure_synthetic_checkpoint("synthetic-bert")


@pytest.mark.parametrize("alias", SYNTHETIC_ALIASES)
def test_checkpoint_dir_is_versioned(alias: str) -> None:
    path = ensure_synthetic_checkpoint(alias)
    assert path == synthetic_checkpoint_dir(alias)
    # Versioned by the build and by the transformers major that wrote the format.
    assert path.name.startswith(f"{alias}-{SYNTHETIC_VERSION}-transformers")
    assert (path / "model.safetensors").is_file()
    assert (path / "tokenizer.json").is_file()


@pytest.mark.parametrize("alias", SYNTHETIC_ALIASES)
def test_loads_fast_with_the_expected_shape(alias: str) -> None:
    from transformers import AutoModelForCausalLM

    path = str(ensure_synthetic_checkpoint(alias))
    AutoModelForCausalLM.from_pretrained(path)  # warm-up: transformers imports lazily
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0  # ~0.03 s here
    config = model.config
    assert config.num_hidden_layers == 3
    assert config.hidden_size == 64
    assert config.num_attention_heads == 4
    assert config.vocab_size == VOCAB
    assert config.max_position_embeddings == 128


def test_family_specific_config() -> None:
    gemma = _load("synthetic-gemma3").config
    assert gemma.final_logit_softcapping == 30.0
    assert gemma.model_type == "gemma3_text"
    assert _load("synthetic-neox").config.use_parallel_residual is True
    opt = _load("synthetic-opt-postnorm")
    assert opt.config.do_layer_norm_before is False
    assert opt.model.decoder.project_in is None and opt.model.decoder.project_out is None
    assert opt.model.decoder.final_layer_norm is None  # post-norm OPT has no final norm
    assert _load("synthetic-llama").config.num_key_value_heads == 2


@pytest.mark.parametrize("alias", SYNTHETIC_ALIASES)
def test_forward_is_deterministic_and_peaked(alias: str, prompt_ids: Any) -> None:
    import torch

    with torch.no_grad():
        first = _load(alias)(prompt_ids).logits[0].float()
        again = _load(alias)(prompt_ids).logits[0].float()
    assert torch.equal(first, again)
    probs = first[-1].softmax(-1)
    entropy_bits = float(-(probs * probs.clamp_min(1e-30).log2()).sum())
    assert float(probs.max()) > 0.05
    assert entropy_bits < math.log2(VOCAB) - 2.0


@pytest.mark.parametrize("alias", SYNTHETIC_ALIASES)
def test_norm_parameters_are_not_at_their_default(alias: str) -> None:
    import torch

    model = _load(alias)
    neutral = 0.0 if alias == "synthetic-gemma3" else 1.0  # Gemma scales by (1 + w)
    checked = 0
    for name, module in model.named_modules():
        if not _is_norm(module):
            continue
        weight: torch.Tensor = module.weight.detach()
        bias: torch.Tensor | None = getattr(module, "bias", None)
        if alias == "synthetic-opt-postnorm" and name.endswith("final_layer_norm"):
            # Post-norm block-final norms keep unit affine params (see synthetic.py).
            assert bias is not None, name
            assert bool((weight == 1).all()) and bool((bias == 0).all()), name
            continue
        assert float((weight - neutral).abs().max()) > 0.1, name
        if bias is not None:
            assert float(bias.detach().abs().max()) > 0.05, name
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("alias", SYNTHETIC_ALIASES)
def test_build_is_byte_identical(alias: str, tokenizer_dir: Path, tmp_path: Path) -> None:
    import torch

    rng_before = torch.random.get_rng_state()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        build_synthetic_checkpoint(alias, tmp_path / name, tokenizer_dir)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the seed did not leak
    weights = [(tmp_path / n / "model.safetensors").read_bytes() for n in ("a", "b")]
    assert weights[0] == weights[1]
    cached = (ensure_synthetic_checkpoint(alias) / "model.safetensors").read_bytes()
    assert cached == weights[0], (
        f"the cached {alias} differs from a fresh build: bump SYNTHETIC_VERSION after "
        "changing the recipe, or delete the stale cache directory"
    )


@pytest.mark.parametrize("alias", SYNTHETIC_ALIASES)
def test_transformer_lens_bridge_boots_supported_families(alias: str, prompt_ids: Any) -> None:
    import torch

    bridge_module = pytest.importorskip("transformer_lens.model_bridge")
    path = str(ensure_synthetic_checkpoint(alias))
    boot = bridge_module.TransformerBridge.boot_transformers
    if alias in TL_BRIDGE_UNSUPPORTED:
        # Booting succeeds but running fails; if it starts working, update the constant.
        with pytest.raises(Exception), torch.no_grad():  # noqa: B017 - any failure counts
            boot(path, device="cpu", dtype=torch.float32)(prompt_ids)
        return
    bridge = boot(path, device="cpu", dtype=torch.float32)
    with torch.no_grad():
        expected = _load(alias)(prompt_ids).logits
        got = bridge(prompt_ids)
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-5)
