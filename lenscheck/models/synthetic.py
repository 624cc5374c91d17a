"""Tiny random models, one per architecture family the lens must handle.

Each is built from a config with a fixed seed (3 layers, d_model 64, 4 heads, the embedded
tokenizer's 49,152-token vocabulary, 128 positions), saved as an ordinary safetensors
checkpoint and loaded by every backend like a real model. They are not meant to say anything
sensible: they exist so that the lens code paths (LayerNorm vs RMSNorm, Gemma's (1 + w)
offset, sandwich norms, logit soft-capping, parallel residuals, post-norm) run offline in
well under a second.

Two deliberate departures from a stock initialization, so the tests have teeth:

* Every norm's affine parameters are re-randomized. Stock init leaves them at identity
  (weight 1 / bias 0, or 0 for Gemma's (1 + w) form), which would hide a lens that applies
  the wrong norm, forgets Gemma's offset or drops a bias.
* The unembedding is drawn with a large standard deviation so the final softmax is peaked
  (top-1 probability > 0.05 at the last prompt position) instead of nearly uniform over
  49,152 tokens, where every layer would look alike.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lenscheck.models.cache import atomic_build_dir, entry_dir, is_ready
from lenscheck.models.embedded import ensure_embedded_checkpoint

# torch and transformers are imported inside the functions that build a model:
# lenscheck.models imports this module, and reading model specs (the plugin's options,
# `lenscheck env`) must not import them.
if TYPE_CHECKING:
    import torch

__all__ = [
    "SYNTHETIC_ALIASES",
    "SYNTHETIC_PREFIX",
    "SYNTHETIC_VERSION",
    "TL_BRIDGE_UNSUPPORTED",
    "build_synthetic_checkpoint",
    "ensure_synthetic_checkpoint",
    "synthetic_checkpoint_dir",
]

_log = logging.getLogger(__name__)

SYNTHETIC_PREFIX = "synthetic-"
#: Bump when a config, the seed or the re-randomization changes: old cache dirs stay valid
#: for old versions and the new ones get a fresh directory name.
SYNTHETIC_VERSION = "v1"

# Shape shared by all families (small enough that one forward takes a few ms on a CPU).
_N_LAYERS = 3
_D_MODEL = 64
_N_HEADS = 4
_HEAD_DIM = _D_MODEL // _N_HEADS
_D_FF = 128
_N_POSITIONS = 128
_VOCAB = 49152  # the embedded SmolLM2 tokenizer's vocabulary
# Special ids of that tokenizer: <|im_start|> = 1 (BOS), <|im_end|> = 2 (EOS and pad).
_SPECIAL_IDS: dict[str, Any] = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}

# Tokenizer files copied from the embedded checkpoint.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


@dataclass(frozen=True)
class _Family:
    """How to build one synthetic family."""

    seed: int
    make_model: Callable[[float], Any]
    # Std of the stock initialization (config ``initializer_range``).
    init_std: float
    # Std of the unembedding matrix (tied: the embedding too). Tuned so the last position
    # of the fixed prompt has a top-1 probability above 0.05 (see the module docstring).
    unembed_std: float
    # Gemma-style norms compute x * (1 + w): their neutral weight is 0, not 1.
    offset_norms: bool = False
    # Names (suffixes) of norm modules that must stay at weight 1 / bias 0.
    keep_unit_norms: tuple[str, ...] = ()


def _gpt2(init_std: float) -> Any:
    """GPT-2: pre-LayerNorm, learned absolute positions, tied embeddings."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=_VOCAB,
        n_positions=_N_POSITIONS,
        n_embd=_D_MODEL,
        n_layer=_N_LAYERS,
        n_head=_N_HEADS,
        n_inner=_D_FF,
        initializer_range=init_std,
        **_SPECIAL_IDS,
    )
    return GPT2LMHeadModel(config)


def _llama(init_std: float) -> Any:
    """Llama: pre-RMSNorm, rotary, grouped-query attention (2 KV heads), untied unembed."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=_VOCAB,
        hidden_size=_D_MODEL,
        intermediate_size=_D_FF,
        num_hidden_layers=_N_LAYERS,
        num_attention_heads=_N_HEADS,
        num_key_value_heads=2,
        head_dim=_HEAD_DIM,
        max_position_embeddings=_N_POSITIONS,
        initializer_range=init_std,
        **_SPECIAL_IDS,
    )
    return LlamaForCausalLM(config)


def _gemma3(init_std: float) -> Any:
    """Gemma-3 text: (1 + w) RMSNorm, sandwich norms, q/k norms, soft-capped logits."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=_VOCAB,
        hidden_size=_D_MODEL,
        intermediate_size=_D_FF,
        num_hidden_layers=_N_LAYERS,
        num_attention_heads=_N_HEADS,
        num_key_value_heads=1,
        head_dim=_HEAD_DIM,
        query_pre_attn_scalar=_HEAD_DIM,
        max_position_embeddings=_N_POSITIONS,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        sliding_window=_N_POSITIONS,
        # Gemma-3 itself has no final soft-cap (Gemma-2 does); set one so that path runs.
        final_logit_softcapping=30.0,
        initializer_range=init_std,
        **_SPECIAL_IDS,
    )
    return Gemma3ForCausalLM(config)


def _neox(init_std: float) -> Any:
    """GPT-NeoX: pre-LayerNorm, parallel attention + MLP residual, partial rotary."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        vocab_size=_VOCAB,
        hidden_size=_D_MODEL,
        intermediate_size=_D_FF,
        num_hidden_layers=_N_LAYERS,
        num_attention_heads=_N_HEADS,
        max_position_embeddings=_N_POSITIONS,
        use_parallel_residual=True,
        initializer_range=init_std,
        **_SPECIAL_IDS,
    )
    return GPTNeoXForCausalLM(config)


def _opt_postnorm(init_std: float) -> Any:
    """OPT post-norm (as OPT-350m): LayerNorm after each residual add, no final norm."""
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(
        vocab_size=_VOCAB,
        hidden_size=_D_MODEL,
        ffn_dim=_D_FF,
        num_hidden_layers=_N_LAYERS,
        num_attention_heads=_N_HEADS,
        max_position_embeddings=_N_POSITIONS,
        do_layer_norm_before=False,
        # == hidden_size, so there is no project_in/project_out around the decoder.
        word_embed_proj_dim=_D_MODEL,
        init_std=init_std,
        **_SPECIAL_IDS,
    )
    return OPTForCausalLM(config)


# init_std / unembed_std were tuned on the fixed prompt (BOS + "Give the city name only, ...",
# 17 tokens). The stock 0.02 init leaves the blocks' contribution negligible next to the
# embeddings (every layer would decode alike) and a 0.02 unembedding gives near-uniform
# logits (15.5 of 15.58 bits); a large tied unembedding instead makes the model echo its
# input token with p = 1. The values below give, at the last position, top-1 p / entropy:
# gpt2 0.14 / 5.8 bits, llama 0.19 / 6.4, gemma3 0.22 / 7.4 (its sandwich norms cap each
# block's output, so with the scaled tied embedding it mostly echoes its input, as real
# models do early on), neox 0.49 / 5.7, opt-postnorm 0.40 / 3.8 (echoes at some positions).
_FAMILIES: dict[str, _Family] = {
    "synthetic-gpt2": _Family(seed=0, make_model=_gpt2, init_std=0.3, unembed_std=0.5),
    "synthetic-llama": _Family(seed=1, make_model=_llama, init_std=0.1, unembed_std=0.5),
    "synthetic-gemma3": _Family(
        seed=2, make_model=_gemma3, init_std=0.1, unembed_std=0.35, offset_norms=True
    ),
    "synthetic-neox": _Family(seed=3, make_model=_neox, init_std=0.1, unembed_std=0.4),
    # The lens re-applies a post-norm block's ln2 (here each layer's `final_layer_norm`) to
    # that block's output, which that very norm already produced. Re-normalizing is only the
    # identity for unit affine parameters, and the last-layer consistency check (lens ==
    # model logits) relies on it, so these norms keep weight 1 / bias 0.
    "synthetic-opt-postnorm": _Family(
        seed=4,
        make_model=_opt_postnorm,
        init_std=0.1,
        unembed_std=0.5,
        keep_unit_norms=("final_layer_norm",),
    ),
}

#: Every synthetic model alias, in a stable order.
SYNTHETIC_ALIASES: tuple[str, ...] = tuple(_FAMILIES)

#: Aliases that TransformerLens 4.3's TransformerBridge cannot run (checked on this machine):
#: OPT post-norm boots, but its forward fails ("Original component not set for
#: model.decoder.final_layer_norm": post-norm OPT has no final norm) and run_with_cache fails
#: with "not enough values to unpack". Use the transformers backend for these.
TL_BRIDGE_UNSUPPORTED: frozenset[str] = frozenset({"synthetic-opt-postnorm"})


def _family(alias: str) -> _Family:
    """Return the family for ``alias`` or raise a ValueError that lists the valid ones."""
    try:
        return _FAMILIES[alias]
    except KeyError:
        valid = ", ".join(SYNTHETIC_ALIASES)
        raise ValueError(f"unknown synthetic model {alias!r}; valid: {valid}") from None


def synthetic_checkpoint_dir(alias: str, cache_dir: Path | None = None) -> Path:
    """Return where ``alias``'s checkpoint lives (whether or not it exists yet):
    ``<cache>/<alias>-<SYNTHETIC_VERSION>-<cache format>``, e.g.
    ``synthetic-llama-v1-transformers5`` (see :mod:`lenscheck.models.cache`)."""
    _family(alias)
    return entry_dir(f"{alias}-{SYNTHETIC_VERSION}", cache_dir)


def ensure_synthetic_checkpoint(alias: str, cache_dir: Path | None = None) -> Path:
    """Return a local checkpoint directory for synthetic model ``alias``, building it once.

    Needs the embedded checkpoint for its tokenizer (provisioned on demand).
    """
    final = synthetic_checkpoint_dir(alias, cache_dir)
    if is_ready(final):
        return final
    tokenizer_dir = ensure_embedded_checkpoint(cache_dir)
    return atomic_build_dir(
        final, lambda out: build_synthetic_checkpoint(alias, out, tokenizer_dir)
    )


def build_synthetic_checkpoint(alias: str, out: Path, tokenizer_dir: Path) -> None:
    """Build ``alias`` deterministically and save model + tokenizer files into ``out``."""
    import torch

    family = _family(alias)
    # fork_rng: the fixed seed must not leak into (or depend on) the caller's RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(family.seed)
        model = family.make_model(family.init_std)
    generator = torch.Generator().manual_seed(family.seed)
    _randomize_norms(model, generator, family)
    _randomize_unembed(model, generator, family.unembed_std)
    model.eval()
    model.save_pretrained(str(out))
    for name in _TOKENIZER_FILES:
        src = tokenizer_dir / name
        if src.is_file():
            shutil.copyfile(src, out / name)
    _log.info("built %s into %s", alias, out)


def _is_norm(module: Any) -> bool:
    """True for LayerNorm and every transformers ``*RMSNorm``/``*LayerNorm`` class."""
    import torch

    if isinstance(module, torch.nn.LayerNorm):
        return True
    name = type(module).__name__
    return name.endswith(("RMSNorm", "LayerNorm"))


def _randomize_norms(model: Any, generator: torch.Generator, family: _Family) -> None:
    """Draw every norm's affine parameters away from identity (see the module docstring)."""
    import torch

    with torch.no_grad():
        for name, module in model.named_modules():
            if not _is_norm(module) or name.endswith(family.keep_unit_norms):
                continue
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor):
                noise = 0.2 * torch.randn(weight.shape, generator=generator)
                weight.copy_(noise if family.offset_norms else 1.0 + noise)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.copy_(0.1 * torch.randn(bias.shape, generator=generator))


def _randomize_unembed(model: Any, generator: torch.Generator, std: float) -> None:
    """Redraw the unembedding (and, when tied, the embedding) with standard deviation ``std``."""
    import torch

    weight = model.get_output_embeddings().weight
    with torch.no_grad():
        weight.copy_(std * torch.randn(weight.shape, generator=generator))
