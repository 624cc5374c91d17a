"""TransformerLens: the 4.x ``TransformerBridge`` with unprocessed weights.

``enable_compatibility_mode()`` folds LayerNorms and centres weights by default,
which changes the logits the lens reads; the bridge is used as booted. Residuals
come from ``blocks.0.hook_in`` (embeddings and positions, as block 0 sees them)
and ``blocks.{i}.hook_out``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import torch

from lenscheck.backends.base import (
    Capture,
    batched_run,
    library_versions,
    right_pad,
    split_rows,
    tl_layer_stack,
)
from lenscheck.backends.hf import find_structure, model_facts, unembedder_for
from lenscheck.backends.hooks import detach_hooks
from lenscheck.backends.tokens import CodecBacked

__all__ = ["INSTALL_TL", "TransformerLensBackend", "boot_bridge", "missing_transformer_lens"]

#: How to install the TransformerLens backends (transformer-lens is an optional extra).
INSTALL_TL = "pip install 'lenscheck[tl]'"


def missing_transformer_lens(backend: str, exc: ImportError) -> str:
    """The message for a TransformerLens backend whose import failed: transformer-lens not
    installed at all (it is the optional ``tl`` extra), or installed in a version without
    what ``backend`` needs."""
    try:
        absent = importlib.util.find_spec("transformer_lens") is None
    except (ImportError, ValueError):
        absent = True
    if absent:
        return (
            f"the {backend} backend needs TransformerLens, which is not installed "
            f"(it is an optional extra). Install it with: {INSTALL_TL}"
        )
    if backend == "hooked-transformer":
        need, pin = (
            "TransformerLens 3.x (4.0 removed HookedTransformer)",
            "'transformer-lens>=3.9,<4'",
        )
    else:
        need, pin = "TransformerLens >= 3.9 with TransformerBridge", "'transformer-lens>=3.9,<5'"
    return f"the {backend} backend needs {need}; import failed ({exc}). Install: pip install {pin}"


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
    try:  # imported here: transformer-lens is an optional extra
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as exc:
        raise ImportError(missing_transformer_lens("transformer-lens", exc)) from exc
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
        self._identify(hf_model, tokenizer, model_id, device)
        structure = find_structure(hf_model)
        self.facts = model_facts(hf_model, structure)
        self.stack = tl_layer_stack(bridge, self.facts.architecture)
        # The bridge's unembed wraps the same lm_head; the softcap lives in the HF config.
        self.unembed = unembedder_for(hf_model, promote_unembed)

    def run(self, ids: list[int]) -> Capture:
        return self.run_batch([ids])[0]

    def run_batch(self, batch: Sequence[list[int]]) -> list[Capture]:
        return batched_run(self._forward, self.facts.d_vocab, batch)

    def _forward(self, batch: list[list[int]]) -> list[Capture]:
        """One right-padded forward pass (see :func:`right_pad`) through the bridge's hooks."""
        n = len(self.stack.blocks)
        names = ["blocks.0.hook_in"] + [f"blocks.{i}.hook_out" for i in range(n)]
        cache: dict[str, Any] = {}

        def make(name: str) -> Any:
            def hook(tensor: Any, hook: Any) -> None:
                cache[name] = tensor.detach()

            return hook

        tokens, mask = right_pad(batch, self.device)
        handles: list[Any] = []
        try:
            for name in names:
                handles.append(self.bridge.hook_dict[name].add_hook(make(name)))
            with torch.no_grad():
                out = (
                    self.bridge(tokens)
                    if mask is None
                    else self.bridge(tokens, attention_mask=mask)
                )
        finally:
            detach_hooks(handles)
        logits = out if isinstance(out, torch.Tensor) else out.logits
        return split_rows([cache[name] for name in names], logits, [len(ids) for ids in batch])

    def versions(self) -> dict[str, str]:
        return library_versions("torch", "transformers", "transformer-lens")
