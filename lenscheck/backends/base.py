"""The small protocol every model library adapter implements, and what they share.

Data flows one way: a backend turns text into token ids and ids into residuals
(the stream entering block 0, then each block's output), exposes the norm modules
in a TransformerLens-shaped :class:`LayerStack`, and unembeds. The lens never asks
which library produced any of it.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import torch

__all__ = [
    "BlockNorms",
    "Capture",
    "LayerStack",
    "LensBackend",
    "ModelFacts",
    "Unembedder",
    "last_logits_each",
    "library_versions",
    "tl_layer_stack",
]


@dataclass(frozen=True)
class ModelFacts:
    """Static facts about a loaded model, reported in the JSON ``model_stats``."""

    num_layers: int
    d_model: int
    n_heads: int
    d_vocab: int
    n_ctx: int
    architecture: Literal["pre_norm", "post_norm"]
    model_class: str
    has_pos_embed: bool


@dataclass
class BlockNorms:
    """A block's two norm modules under TransformerLens' names."""

    ln1: Any
    ln2: Any


@dataclass
class LayerStack:
    """TransformerLens-shaped view of a model's norms for the seed's norm selection."""

    architecture: Literal["pre_norm", "post_norm"]
    blocks: list[BlockNorms]
    ln_final: Any


def tl_layer_stack(model: Any, architecture: Literal["pre_norm", "post_norm"]) -> LayerStack:
    """The stack of a TransformerLens-shaped model (bridge or HookedTransformer), whose
    blocks carry ``ln1``/``ln2`` and whose final norm is ``ln_final``."""
    blocks = [BlockNorms(getattr(b, "ln1", None), getattr(b, "ln2", None)) for b in model.blocks]
    return LayerStack(architecture, blocks, getattr(model, "ln_final", None))


@dataclass
class Capture:
    """One forward pass: L+1 residuals of shape [T, d] and the model's own logits [T, V]."""

    residuals: list[torch.Tensor]
    logits: torch.Tensor


@dataclass
class Unembedder:
    """Residual -> fp32 logits through the model's own unembedding (and softcap).

    ``promote`` keeps an fp32 copy of W_U: the lens then unembeds in fp32 whatever
    the compute dtype (``--fp32-unembed``, or automatically for fp32 models).
    """

    weight: torch.Tensor  # [V, d], the lm_head layout
    bias: torch.Tensor | None
    softcap: float | None
    promote: bool
    module: Any = None  # called as is for quantized (non-float) weights
    _w32: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        import torch

        if self.promote and torch.is_floating_point(self.weight):
            self._w32 = (self.weight.float(), None if self.bias is None else self.bias.float())

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the unembedding matmul runs in."""
        import torch

        return torch.float32 if self._w32 is not None else self.weight.dtype

    def __call__(self, resid: torch.Tensor) -> torch.Tensor:
        import torch

        from lenscheck.numerics import safe_cast_for_unembed

        if self._w32 is not None:
            w, b = self._w32
        elif torch.is_floating_point(self.weight):
            w, b = self.weight, self.bias
        else:
            return self._cap(self.module(resid).float())
        x = safe_cast_for_unembed(resid, w, force_fp32_unembed=self._w32 is not None)
        return self._cap(torch.nn.functional.linear(x, w, b).float())

    def _cap(self, logits: torch.Tensor) -> torch.Tensor:
        if self.softcap is None:
            return logits
        return self.softcap * (logits / self.softcap).tanh()


class LensBackend(Protocol):
    """What the lens needs from a model library."""

    name: str
    model_id: str
    device: str
    dtype: torch.dtype
    facts: ModelFacts
    stack: LayerStack
    unembed: Unembedder
    bos_token_id: int | None

    def encode(self, text: str) -> list[int]:
        """Forward token ids: BOS (when the tokenizer has one) + the text without specials."""

    def prompt_ids(self, text: str) -> list[int]:
        """The text's ids without any special token (the copy-detection set)."""

    def decode(self, token_id: int) -> str:
        """One id decoded on its own, as the top-k columns show it."""

    def token_text(self, token_id: int) -> str:
        """One prompt id as the position label (no clean-up of spaces)."""

    def run(self, ids: list[int]) -> Capture:
        """Forward ``ids`` capturing every residual and the model's own logits."""

    def next_token_logits_batch(self, batch: Sequence[list[int]]) -> torch.Tensor:
        """The model's own fp32 logits [N, V] at the last position of each prompt (no capture)."""

    def versions(self) -> dict[str, str]:
        """Library versions that produced the numbers."""


def last_logits_each(
    forward: Callable[[list[int]], torch.Tensor], batch: Sequence[list[int]]
) -> torch.Tensor:
    """[N, V]: the last row of ``forward(ids)`` for each prompt, one forward pass each."""
    import torch

    return torch.stack([forward(ids)[-1] for ids in batch])


def library_versions(*dists: str) -> dict[str, str]:
    """Installed versions of ``dists`` (``"absent"`` when not installed)."""
    out: dict[str, str] = {}
    for dist in dists:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out
