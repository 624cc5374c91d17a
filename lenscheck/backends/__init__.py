"""Model-library adapters behind one protocol; :func:`load_backend` picks one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lenscheck.backends.base import Capture, LayerStack, LensBackend, ModelFacts, Unembedder

if TYPE_CHECKING:
    import torch

__all__ = ["Capture", "LayerStack", "LensBackend", "ModelFacts", "Unembedder", "load_backend"]


def load_backend(
    backend: str,
    path: str,
    *,
    model_id: str,
    device: str,
    dtype: torch.dtype,
    promote_unembed: bool,
    trust_remote_code: bool = False,
    device_map: str | None = None,
) -> LensBackend:
    """Load ``path`` (local dir or hub id) through ``backend`` on ``device`` in ``dtype``."""
    from lenscheck.backends.hf import TransformersBackend, load_hf_model

    model, tokenizer = load_hf_model(
        path, dtype=dtype, device=device, trust_remote_code=trust_remote_code, device_map=device_map
    )
    if backend == "transformers":
        return TransformersBackend(
            model, tokenizer, model_id=model_id, device=device, promote_unembed=promote_unembed
        )
    if backend == "transformer-lens":
        from lenscheck.backends.tl import TransformerLensBackend, boot_bridge

        bridge = boot_bridge(
            path, model, tokenizer, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        return TransformerLensBackend(
            bridge,
            model,
            tokenizer,
            model_id=model_id,
            device=device,
            promote_unembed=promote_unembed,
        )
    raise ValueError(f"backend must be 'transformers' or 'transformer-lens', got {backend!r}")
