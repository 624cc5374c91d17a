"""TransformerLens: the 4.x ``TransformerBridge`` with unprocessed weights.

``enable_compatibility_mode()`` folds LayerNorms and centres weights by default,
which changes the logits the lens reads; the bridge is used as booted. Residuals
come from ``blocks.0.hook_in`` (embeddings and positions, as block 0 sees them)
and ``blocks.{i}.hook_out``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lenscheck.backends.base import (
    Capture,
    last_logits_each,
    library_versions,
    tl_layer_stack,
)
from lenscheck.backends.hf import find_structure, model_facts, unembedder_for
from lenscheck.backends.tokens import CodecBacked, TokenCodec

if TYPE_CHECKING:
    import torch

__all__ = ["TransformerLensBackend", "boot_bridge"]


def boot_bridge(
    path: str,
    hf_model: Any,
    tokenizer: Any,
    *,
    device: str,
    dtype: torch.dtype,
    trust_remote_code: bool,
) -> Any:
    """Boot a TransformerBridge around an already loaded transformers model."""
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as exc:  # TransformerLens < 3.9 has no bridge
        raise ImportError(
            "the transformer-lens backend needs TransformerLens >= 3.9 with TransformerBridge; "
            f"found none ({exc}). Install it: pip install 'transformer-lens>=3.9,<5'"
        ) from exc
    return TransformerBridge.boot_transformers(
        path,
        device=device,
        dtype=dtype,
        tokenizer=tokenizer,
        hf_model=hf_model,
        trust_remote_code=trust_remote_code,
    )


class TransformerLensBackend(CodecBacked):
    """The lens through TransformerLens' bridge."""

    name = "transformer-lens"

    def __init__(
        self,
        bridge: Any,
        hf_model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        device: str,
        promote_unembed: bool,
    ) -> None:
        self.bridge = bridge
        self.model_id = model_id
        self.device = device
        self.dtype = next(hf_model.parameters()).dtype
        self.codec = TokenCodec(tokenizer)
        self.bos_token_id = self.codec.bos_token_id
        structure = find_structure(hf_model)
        self.facts = model_facts(hf_model, structure)
        self.stack = tl_layer_stack(bridge, self.facts.architecture)
        # The bridge's unembed wraps the same lm_head; the softcap lives in the HF config.
        self.unembed = unembedder_for(hf_model, promote_unembed)

    def _forward(self, ids: list[int]) -> torch.Tensor:
        import torch

        tokens = torch.tensor([ids], dtype=torch.long, device=self.device)
        with torch.no_grad():
            out = self.bridge(tokens)
        logits = out if isinstance(out, torch.Tensor) else out.logits
        return logits[0].float()

    def run(self, ids: list[int]) -> Capture:
        from lenscheck.hooks import detach_hooks

        n = len(self.stack.blocks)
        names = ["blocks.0.hook_in"] + [f"blocks.{i}.hook_out" for i in range(n)]
        cache: dict[str, Any] = {}

        def make(name: str) -> Any:
            def hook(tensor: Any, hook: Any) -> None:
                cache[name] = tensor[0].detach()

            return hook

        handles: list[Any] = []
        try:
            for name in names:
                handles.append(self.bridge.hook_dict[name].add_hook(make(name)))
            logits = self._forward(ids)
        finally:
            detach_hooks(handles)
        return Capture(residuals=[cache[name] for name in names], logits=logits)

    def next_token_logits_batch(self, batch: Sequence[list[int]]) -> torch.Tensor:
        return last_logits_each(self._forward, batch)

    def versions(self) -> dict[str, str]:
        return library_versions("torch", "transformers", "transformer-lens")
