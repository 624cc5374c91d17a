"""Model-library adapters behind one protocol; :func:`load_backend` picks one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lenscheck.backends.base import Capture, LayerStack, LensBackend, ModelFacts, Unembedder

if TYPE_CHECKING:
    import torch

__all__ = [
    "UNSUPPORTED",
    "Capture",
    "LayerStack",
    "LensBackend",
    "ModelFacts",
    "Unembedder",
    "load_backend",
]

# Synthetic families a backend cannot load, and why (checked by tests and `nox -s compat`).
UNSUPPORTED: dict[str, dict[str, str]] = {
    "transformers": {},
    "transformer-lens": {
        "synthetic-opt-postnorm": "TransformerBridge cannot run a post-norm OPT",
    },
    "hooked-transformer": {
        "synthetic-gpt2": "TransformerLens 3.9 reads GPT2Config.n_ctx; transformers 5 removed it",
        "synthetic-gemma3": "TransformerLens 3.9 has no Gemma3ForCausalLM support",
        "synthetic-opt-postnorm": "TransformerLens 3.9 cannot convert a post-norm OPT",
    },
}


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
    # The adapters are imported here: they import torch and transformers (transformer_lens
    # when loading), and `import lenscheck` imports this package.
    from lenscheck.backends.hf import TransformersBackend, load_hf_model

    if backend not in UNSUPPORTED:  # before loading: a typo should not cost a model load
        raise ValueError(f"backend must be one of {', '.join(UNSUPPORTED)}; got {backend!r}")
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
    if backend == "hooked-transformer":
        from lenscheck.backends.hooked import HookedTransformerBackend, build_hooked_transformer

        hooked = build_hooked_transformer(path, model, tokenizer, device=device, dtype=dtype)
        return HookedTransformerBackend(
            hooked,
            model,
            tokenizer,
            model_id=model_id,
            device=device,
            promote_unembed=promote_unembed,
        )
    raise AssertionError(f"unhandled backend {backend!r}")  # pragma: no cover
