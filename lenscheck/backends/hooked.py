"""TransformerLens 3.x ``HookedTransformer``, the API the original pipeline used.

Built from the already loaded transformers model without any weight processing
(no LayerNorm folding, no centring), exactly as ``from_pretrained_no_processing``
would. That constructor only accepts names from TransformerLens' official list, so
the config and weights go through its lower-level converters instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lenscheck.backends.base import (
    Capture,
    Unembedder,
    library_versions,
    run_each,
    tl_layer_stack,
)
from lenscheck.backends.hf import find_structure, model_facts
from lenscheck.backends.hooks import attach_residual_hooks, build_cache_hook, detach_hooks
from lenscheck.backends.tl import missing_transformer_lens
from lenscheck.backends.tokens import CodecBacked

__all__ = ["HookedTransformerBackend", "build_hooked_transformer"]


def _neutral_path(path: str) -> str:
    """A symlink to ``path`` whose name says nothing: TransformerLens picks an
    architecture from substrings like "llama" or "gemma" in the path and then skips
    reading the config; a neutral name makes it read config.json."""
    link = Path(tempfile.mkdtemp(prefix="lenscheck-tl-")) / "checkpoint"
    link.symlink_to(Path(path).resolve(), target_is_directory=True)
    return str(link)


def build_hooked_transformer(
    path: str, hf_model: Any, tokenizer: Any, *, device: str, dtype: torch.dtype
) -> Any:
    """A HookedTransformer with the transformers model's weights, unprocessed."""
    try:  # imported here: transformer-lens (3.x) is an optional extra
        from transformer_lens import HookedTransformer, HookedTransformerConfig
        from transformer_lens import loading_from_pretrained as loading
    except ImportError as exc:
        raise ImportError(missing_transformer_lens("hooked-transformer", exc)) from exc
    local = path if Path(path).is_dir() else None
    if local is None:
        raise ValueError(f"the hooked-transformer backend loads local checkpoints; got {path!r}")
    extra = {}
    if not hasattr(hf_model.config, "n_ctx") and hasattr(hf_model.config, "n_positions"):
        extra["n_ctx"] = hf_model.config.n_positions  # transformers 5 dropped GPT-2's n_ctx
    cfg_dict = loading.convert_hf_model_config(_neutral_path(local), **extra)
    cfg = HookedTransformerConfig(
        **{**cfg_dict, "dtype": dtype, "device": device, "default_prepend_bos": True}
    )
    state = loading.get_pretrained_state_dict(_neutral_path(local), cfg, hf_model=hf_model)
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    model.load_and_process_state_dict(
        state,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return model.to(device).eval()


class HookedTransformerBackend(CodecBacked):
    """The lens through HookedTransformer: ``hook_embed`` (+ ``hook_pos_embed``) and
    ``blocks.{i}.hook_resid_post``, as the original pipeline hooked it."""

    name = "hooked-transformer"

    def __init__(
        self,
        model: Any,
        hf_model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        device: str,
        promote_unembed: bool,
    ) -> None:
        self.model = model
        self._identify(hf_model, tokenizer, model_id, device)
        self.facts = model_facts(hf_model, find_structure(hf_model))
        self.stack = tl_layer_stack(model, self.facts.architecture)
        softcap = getattr(hf_model.config, "final_logit_softcapping", None)
        self.unembed = Unembedder(
            weight=model.unembed.W_U.T,
            bias=model.unembed.b_U,
            softcap=None if softcap is None else float(softcap),
            promote=promote_unembed,
        )

    def _logits(self, ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return self.model(torch.tensor([ids], device=self.device))[0].float()

    def run(self, ids: list[int]) -> Capture:
        cache: dict[str, Any] = {}
        handles, has_pos_embed = attach_residual_hooks(self.model, build_cache_hook(cache))
        try:
            logits = self._logits(ids)
        finally:
            detach_hooks(handles)
        layer0 = cache["hook_embed"]
        if has_pos_embed:
            layer0 = layer0 + cache["hook_pos_embed"]
        n = self.model.cfg.n_layers
        residuals = [layer0[0]] + [cache[f"blocks.{i}.hook_resid_post"][0] for i in range(n)]
        return Capture(residuals=residuals, logits=logits)

    def run_batch(self, batch: Sequence[list[int]]) -> list[Capture]:
        # One forward per prompt: TransformerLens' padding conventions (left padding,
        # shifted positions) would change the numbers a prompt has alone.
        return run_each(self.run, batch)

    def versions(self) -> dict[str, str]:
        return library_versions("torch", "transformers", "transformer-lens")
