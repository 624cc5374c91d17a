"""The JSON's diagnostics block (norms, fixes, versions, tokenization, last-layer
consistency) and its model_stats."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lenscheck._version import __version__
from lenscheck.lens.records import first_rule_layer
from lenscheck.norms import apply_norm_or_skip, final_norm_module, norm_spec
from lenscheck.numerics import kl_bits
from lenscheck.prompts import TARGET_PREDICTION
from lenscheck.vocab import FINAL, RAW, SCHEMA_ORIGINAL

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import Capture, LensBackend
    from lenscheck.config import LensConfig
    from lenscheck.lens.stats import LensStats
    from lenscheck.lenses.base import Lens

__all__ = [
    "base_diagnostics",
    "consistency",
    "extra_diagnostics",
    "final_point_last_layer",
    "model_stats",
]


def consistency(lens_last: torch.Tensor, model_logits: torch.Tensor) -> dict[str, Any]:
    """KL(model || lens) in bits at the last layer, and whether every top-1 agrees."""
    kl = kl_bits(model_logits, lens_last)
    agree = bool((lens_last.argmax(-1) == model_logits.argmax(-1)).all())
    return {"kl_bits_last_pos": float(kl[-1]), "kl_bits_max": float(kl.max()), "top1_agree": agree}


def final_point_last_layer(
    backend: LensBackend, lens: Lens, capture: Capture, st: LensStats
) -> Any:
    """Lens logits [T, V] at the last layer through the norm before the unembedding.

    Every lens but the raw logit lens already decodes the last layer that way; the
    last-layer consistency check is about the lens machinery, not the decoding point.
    """
    if lens.last_layer_is_the_model_head:
        return st.last_layer
    return backend.unembed(
        apply_norm_or_skip(capture.residuals[-1], final_norm_module(backend.stack))
    )


def _norm_names(backend: LensBackend) -> tuple[str | None, str | None]:
    def name(module: Any) -> str | None:
        return None if module is None else norm_spec(module).class_name

    first = backend.stack.blocks[0].ln1 if backend.stack.blocks else None
    return name(first), name(backend.stack.ln_final)


def _norm_labels(backend: LensBackend, point: str) -> tuple[str, str]:
    """``norm_alignment_fix`` and ``layer0_norm_fix``: which norms the lens applied at
    ``point`` (the original's strings at next-ln1, where they were written)."""
    if point == RAW:
        return "none_raw_lens", "none_raw_lens"
    if point == FINAL:
        return "using_final_norm_at_every_layer", "using_final_norm_on_embeddings"
    ln2 = backend.stack.blocks[0].ln2 if backend.stack.blocks else None
    ln2_kind = norm_spec(ln2).kind if ln2 is not None else None
    alignment = (
        "fallback_to_ln1"
        if ln2_kind is None
        else f"using_ln2_{'layernorm' if ln2_kind == 'layernorm' else 'rmsnorm'}_for_post_block"
    )
    return alignment, "using_real_ln1_on_embeddings"


def base_diagnostics(backend: LensBackend, cfg: LensConfig) -> dict[str, Any]:
    """The first keys of the diagnostics block: the norms and the original's fixes."""
    first, final = _norm_names(backend)
    kind0 = norm_spec(backend.stack.blocks[0].ln1).kind if first else None
    alignment, layer0 = _norm_labels(backend, cfg.decode_norm)
    return {
        "type": "diagnostics",
        "model": backend.model_id,
        "device": backend.device,
        "use_norm_lens": cfg.decode_norm != RAW,
        "use_fp32_unembed": str(backend.dtype) == "torch.float32",
        "unembed_dtype": str(backend.unembed.dtype),
        "first_block_ln1_type": first,
        "final_ln_type": final,
        "layernorm_bias_fix": "active" if kind0 == "layernorm" else "not_needed_rms_model",
        "norm_alignment_fix": alignment,
        "layer0_norm_fix": layer0,
        "mixed_precision_fix": "casting_to_fp32_before_unembed",
        "layer0_position_info": (
            "additive_pos_embed_included"
            if backend.facts.has_pos_embed
            else "token_only_rotary_model"
        ),
        "context_prompt": cfg.prompt,
        "target_prediction": TARGET_PREDICTION,
    }


def extra_diagnostics(
    backend: LensBackend,
    cfg: LensConfig,
    ids: list[int],
    answer: dict[str, Any],
    lens_last: torch.Tensor,
    model_logits: torch.Tensor,
) -> dict[str, Any]:
    """The diagnostics after the collapse summary: consistency, versions, tokenization."""
    return {
        "last_layer_consistency": consistency(lens_last, model_logits),
        "backend": backend.name,
        "model_source": cfg.model_source,
        "versions": {"lenscheck": __version__, **backend.versions()},
        "compute_dtype": str(backend.dtype),
        "architecture": backend.facts.architecture,
        "model_class": backend.facts.model_class,
        "tokenization": _tokenization(backend, cfg, ids),
        "copy_threshold": cfg.copy_threshold,
        "copy_margin": cfg.copy_margin,
        **answer,
        "decode_norm": cfg.decode_norm,
        **({} if cfg.schema == SCHEMA_ORIGINAL else _settings(cfg)),
    }


def _tokenization(backend: LensBackend, cfg: LensConfig, ids: list[int]) -> dict[str, Any]:
    bos = backend.bos_token_id
    facts: dict[str, Any] = {
        "prepend_bos": bos is not None and ids[:1] == [bos],
        "n_tokens": len(ids),
        "input_ids": ids,
    }
    if cfg.schema != SCHEMA_ORIGINAL:
        facts.update(
            bos_policy=cfg.bos,
            tokenizer_adds_bos=backend.codec.adds_bos,
            chat_template=cfg.chat_template,
        )
    return facts


def _settings(cfg: LensConfig) -> dict[str, Any]:
    """The run's conventions (extended schema): what a golden of another preset differs in."""
    return {
        "preset": cfg.preset,
        "bos": cfg.bos,
        "schema": cfg.schema,
        "chat_template": cfg.chat_template,
        "collapse_from_layer": first_rule_layer(cfg),
    }


def model_stats(backend: LensBackend) -> dict[str, Any]:
    """The JSON's model_stats block."""
    return {
        "type": "model_stats",
        "num_layers": backend.facts.num_layers,
        "d_model": backend.facts.d_model,
        "n_heads": backend.facts.n_heads,
        "d_vocab": backend.facts.d_vocab,
        "n_ctx": backend.facts.n_ctx,
        "architecture": backend.facts.architecture,
    }
