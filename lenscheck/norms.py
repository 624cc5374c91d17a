"""Re-apply a model's own normalization to residuals, and choose which norm applies.

The lens is only faithful when the re-applied norm is *the model's* norm: LayerNorm
with its gamma and beta, RMSNorm with epsilon inside the square root, Gemma's
``(1 + w)`` scale. Every parameter is read from the module; a class we have not
verified raises :class:`UnsupportedNormError` instead of being guessed at (the
original pipeline silently treated anything that was not ``torch.nn.LayerNorm`` as
RMSNorm, which drops the centring and the bias of TransformerLens' LayerNorm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lenscheck.vocab import DECODE_POINTS, FINAL, NEXT_LN1, RAW, DecodePoint

# torch is imported inside the functions that need it: `import lenscheck` imports this
# module and must stay free of torch.
if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "DECODE_NORMS",
    "GEMMA_OFFSET_RMSNORMS",
    "DecodeNorm",
    "NormSpec",
    "UnsupportedNormError",
    "apply_norm",
    "apply_norm_or_skip",
    "decode_norm_modules",
    "detect_model_architecture",
    "final_norm_module",
    "get_correct_norm_module",
    "lens_norm_modules",
    "norm_spec",
    "unwrap_norm",
]

Architecture = Literal["pre_norm", "post_norm"]
#: The decoding points (owned by :mod:`lenscheck.vocab`), under the names this module has
#: always exported them by.
DecodeNorm = DecodePoint
DECODE_NORMS: tuple[DecodeNorm, ...] = DECODE_POINTS

# transformers RMSNorm classes that scale by (1 + w) and cast after scaling.
GEMMA_OFFSET_RMSNORMS = frozenset({"GemmaRMSNorm", "Gemma2RMSNorm", "Gemma3RMSNorm"})
_TL_LAYERNORMS = frozenset({"LayerNorm", "LayerNormPre"})
_TL_RMSNORMS = frozenset({"RMSNorm", "RMSNormPre"})


class UnsupportedNormError(TypeError):
    """A norm module whose semantics lenscheck has not verified."""


@dataclass(frozen=True)
class NormSpec:
    """Everything needed to recompute a norm module's forward exactly."""

    kind: Literal["layernorm", "rmsnorm"]
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    eps: float | None  # None: torch.nn.RMSNorm's default, finfo(fp32).eps for fp16/bf16/fp32
    weight_offset: float = 0.0  # 1.0 for Gemma's (1 + w)
    cast_before_scale: bool = False  # Llama: normalize, cast to input dtype, then * w
    class_name: str = ""


def unwrap_norm(module: Any) -> Any:
    """Return the library module behind TransformerLens 4 bridge wrappers."""
    seen = 0
    while type(module).__name__.endswith("Bridge") and seen < 8:
        inner = getattr(module, "original_component", None)
        if inner is None:
            break
        module, seen = inner, seen + 1
    return module


def _qualname(module: Any) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def _from_transformers(module: Any, name: str) -> NormSpec | None:
    if name in GEMMA_OFFSET_RMSNORMS:
        return NormSpec("rmsnorm", module.weight, None, float(module.eps), 1.0, False, name)
    if name.endswith("RMSNorm") and hasattr(module, "variance_epsilon"):
        # The Llama family (Mistral, Qwen2/3, ...) shares LlamaRMSNorm's forward.
        eps = float(module.variance_epsilon)
        return NormSpec("rmsnorm", module.weight, None, eps, 0.0, True, name)
    return None


def _from_transformer_lens(module: Any, name: str) -> NormSpec | None:
    if name in _TL_LAYERNORMS:
        return NormSpec(
            "layernorm",
            getattr(module, "w", None),
            getattr(module, "b", None),
            float(module.eps),
            class_name=name,
        )
    if name in _TL_RMSNORMS:
        eps = float(module.eps)
        return NormSpec("rmsnorm", getattr(module, "w", None), None, eps, class_name=name)
    return None


def norm_spec(norm_module: Any) -> NormSpec:
    """Describe ``norm_module`` (after unwrapping bridges) or raise UnsupportedNormError."""
    from torch import nn

    module = unwrap_norm(norm_module)
    name = type(module).__name__
    spec: NormSpec | None = None
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)) and len(module.normalized_shape) != 1:
        raise UnsupportedNormError(
            f"norm module {_qualname(module)} normalizes over normalized_shape="
            f"{tuple(module.normalized_shape)}; the lens supports the last dimension only"
        )
    if isinstance(module, nn.LayerNorm):
        spec = NormSpec("layernorm", module.weight, module.bias, float(module.eps), class_name=name)
    elif isinstance(module, nn.RMSNorm):
        eps = None if module.eps is None else float(module.eps)
        spec = NormSpec("rmsnorm", module.weight, None, eps, class_name=name)
    elif type(module).__module__.startswith("transformers."):
        spec = _from_transformers(module, name)
    elif type(module).__module__.startswith("transformer_lens."):
        spec = _from_transformer_lens(module, name)
    if spec is None:
        raise UnsupportedNormError(
            f"norm module {_qualname(module)} is not a norm class lenscheck knows; expected "
            "torch.nn.LayerNorm/RMSNorm, a transformers *RMSNorm (Llama-style or Gemma (1+w)), "
            "or a TransformerLens LayerNorm/RMSNorm. Refusing to guess its formula: add it to "
            "lenscheck.norms with a test that compares against the module's forward."
        )
    return spec


def apply_norm(x: torch.Tensor, spec: NormSpec) -> torch.Tensor:
    """Recompute the norm described by ``spec`` on ``x``; statistics in fp32, dtype kept."""
    import torch

    x32 = x.float()
    if spec.kind == "layernorm":
        centred = x32 - x32.mean(dim=-1, keepdim=True)
        eps = spec.eps if spec.eps is not None else 0.0
        y = centred * torch.rsqrt(centred.pow(2).mean(dim=-1, keepdim=True) + eps)
    else:
        # torch.nn.RMSNorm(eps=None) adds the machine epsilon of its computation dtype
        # (fp32 for fp16/bf16/fp32 inputs), not finfo(input dtype).eps.
        stats_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        eps = spec.eps if spec.eps is not None else torch.finfo(stats_dtype).eps
        y = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    if spec.weight is not None:
        if spec.cast_before_scale:
            return (spec.weight * y.to(x.dtype)).to(x.dtype)
        y = y * (spec.weight.float() + spec.weight_offset)
    if spec.bias is not None:
        y = y + spec.bias.float()
    return y.to(x.dtype)


def apply_norm_or_skip(residual: torch.Tensor, norm_module: nn.Module | None) -> torch.Tensor:
    """Apply ``norm_module``'s own normalization to ``residual``; ``None`` returns it as is."""
    if norm_module is None:
        return residual
    return apply_norm(residual, norm_spec(norm_module))


def detect_model_architecture(model: Any) -> Architecture:
    """``'post_norm'`` or ``'pre_norm'``.

    An explicit ``architecture`` attribute (lenscheck's backends set one from the
    model config) wins. Otherwise the original pipeline's structural rule: a block whose ``ln2``
    is registered after its ``mlp`` is post-norm.
    """
    declared = getattr(model, "architecture", None)
    if declared in ("pre_norm", "post_norm"):
        return "post_norm" if declared == "post_norm" else "pre_norm"
    blocks = getattr(model, "blocks", None)
    if not blocks:
        return "pre_norm"
    block = blocks[0]
    if hasattr(block, "ln2") and hasattr(block, "mlp") and hasattr(block, "children"):
        kids = list(block.children())
        try:
            return "post_norm" if kids.index(block.ln2) > kids.index(block.mlp) else "pre_norm"
        except ValueError:
            pass
    return "pre_norm"


def get_correct_norm_module(model: Any, layer_idx: int, probe_after_block: bool = True) -> Any:
    """The norm that the model itself applies to the residual probed at ``layer_idx``.

    Pre-norm: after block i -> block i+1's ln1 (the final norm after the last block);
    before block i -> block i's ln1. Post-norm: after block i -> block i's ln2;
    before block i -> block i's ln1. ``layer_idx`` past the last block -> final norm.
    """
    blocks = model.blocks
    if layer_idx >= len(blocks):
        return getattr(model, "ln_final", None)
    if not probe_after_block:
        return getattr(blocks[layer_idx], "ln1", None)
    if detect_model_architecture(model) == "post_norm":
        return getattr(blocks[layer_idx], "ln2", None)
    if layer_idx + 1 < len(blocks):
        return getattr(blocks[layer_idx + 1], "ln1", None)
    return getattr(model, "ln_final", None)


def lens_norm_modules(model: Any) -> list[Any]:
    """Norm module per lens layer 0..L: embeddings first, then each block's output."""
    first = get_correct_norm_module(model, 0, probe_after_block=False)
    return [first] + [get_correct_norm_module(model, i) for i in range(len(model.blocks))]


def final_norm_module(model: Any) -> Any:
    """The norm in front of the unembedding: ``ln_final``, or for a post-norm model without
    one (OPT-350m) the last block's ``ln2``, whose output the unembedding reads."""
    final = getattr(model, "ln_final", None)
    if final is None and detect_model_architecture(model) == "post_norm" and model.blocks:
        return getattr(model.blocks[-1], "ln2", None)
    return final


def decode_norm_modules(model: Any, point: str) -> list[Any]:
    """Norm module per lens layer 0..L for decoding point ``point`` (see :data:`DecodeNorm`)."""
    if point == NEXT_LN1:
        return lens_norm_modules(model)
    n = len(model.blocks) + 1
    if point == FINAL:
        return [final_norm_module(model)] * n
    if point == RAW:
        return [None] * n
    raise ValueError(f"decode norm must be one of {', '.join(DECODE_NORMS)}, got {point!r}")
