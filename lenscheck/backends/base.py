"""The small protocol every model library adapter implements, and what they share.

Data flows one way: a backend turns text into token ids and ids into residuals
(the stream entering block 0, then each block's output), exposes the norm modules
in a TransformerLens-shaped :class:`LayerStack`, and unembeds. The lens never asks
which library produced any of it.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from lenscheck.numerics import safe_cast_for_unembed

# torch is imported inside the functions that need it: `import lenscheck` imports this
# module (through lenscheck.backends.hooks) and must stay free of torch.
if TYPE_CHECKING:
    import torch

    from lenscheck.backends.tokens import TokenCodec
    from lenscheck.vocab import BosPolicy

__all__ = [
    "BlockNorms",
    "Capture",
    "LayerStack",
    "LensBackend",
    "ModelFacts",
    "Unembedder",
    "batch_token_budget",
    "batched_run",
    "library_versions",
    "plan_batches",
    "right_pad",
    "run_each",
    "split_rows",
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
    """TransformerLens-shaped view of a model's norms for the original pipeline's norm selection."""

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

        # Detached: the lens never needs gradients, and a Parameter here would make a
        # caller outside torch.no_grad() build an autograd graph over every unembedding.
        self.weight = self.weight.detach()
        self.bias = None if self.bias is None else self.bias.detach()
        if self.promote and torch.is_floating_point(self.weight):
            self._w32 = (self.weight.float(), self.bias if self.bias is None else self.bias.float())

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the unembedding matmul runs in."""
        import torch

        return torch.float32 if self._w32 is not None else self.weight.dtype

    def __call__(
        self, resid: torch.Tensor, *, fp32: bool = False, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits of ``resid``; ``fp32`` computes in float32 whatever the weight's dtype (a
        few rows of a raw, un-normalized residual would overflow half precision).

        ``out``: an fp32 [rows, V] buffer the logits are written into when the matmul runs
        in fp32 without a bias (the same kernel as ``linear``, so the same bits); use the
        returned tensor, which is a new one otherwise.
        """
        import torch

        if self._w32 is not None:
            w, b = self._w32
        elif not torch.is_floating_point(self.weight):
            return self._cap(self.module(resid).float())
        elif fp32:
            w, b = self.weight.float(), None if self.bias is None else self.bias.float()
        else:
            w, b = self.weight, self.bias
        force = self._w32 is not None or fp32
        x = safe_cast_for_unembed(resid, w, force_fp32_unembed=force)
        if out is not None and b is None and x.dtype == w.dtype == torch.float32:
            return self._cap(torch.matmul(x, w.t(), out=out))
        return self._cap(torch.nn.functional.linear(x, w, b).float())

    def _cap(self, logits: torch.Tensor) -> torch.Tensor:
        """Gemma-style softcap, in place: ``logits`` is always a fresh or a scratch buffer."""
        if self.softcap is None:
            return logits
        return logits.div_(self.softcap).tanh_().mul_(self.softcap)


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

    codec: TokenCodec

    def encode(self, text: str) -> list[int]:
        """Forward token ids under the run's BOS policy (and chat template)."""

    def tokenize_with(self, bos: BosPolicy, chat_template: bool = False) -> None:
        """Tokenize under ``bos`` (and the tokenizer's chat template) from now on."""

    def prompt_ids(self, text: str) -> list[int]:
        """The text's ids without any special token (the copy-detection set)."""

    def decode(self, token_id: int) -> str:
        """One id decoded on its own, as the top-k columns show it."""

    def token_text(self, token_id: int) -> str:
        """One prompt id as the position label (no clean-up of spaces)."""

    def run(self, ids: list[int]) -> Capture:
        """Forward ``ids`` capturing every residual and the model's own logits."""

    def run_batch(self, batch: Sequence[list[int]]) -> list[Capture]:
        """:meth:`run` for every prompt of ``batch``, in as few forward passes as memory allows."""

    def versions(self) -> dict[str, str]:
        """Library versions that produced the numbers."""


#: Padded positions of one forward pass: its logits are [batch, width, vocab] fp32, so the
#: budget shrinks with the vocabulary (64 Mi logits = 256 MiB; 341 positions at 49,152 ids).
_LOGIT_BUDGET = 1 << 26
_MAX_BATCH_TOKENS = 2048


def batch_token_budget(d_vocab: int) -> int:
    """Padded positions one forward pass may hold for a model with ``d_vocab`` ids."""
    return max(1, min(_MAX_BATCH_TOKENS, _LOGIT_BUDGET // max(d_vocab, 1)))


def plan_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Group prompt indices into right-padded batches of at most ``budget`` padded positions.

    Longest first, so each batch pads to its first prompt's length and similar lengths
    share a batch; a prompt longer than the budget runs alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def right_pad(batch: Sequence[list[int]], device: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[B, width] token ids padded on the right with 0, and the attention mask.

    The mask is None when nothing is padded: the unmasked causal path is the one a single
    prompt always took, so a lone prompt's numbers stay what they were. Causal attention
    keeps every real token blind to the padding after it, and a right-padded prompt keeps
    the positions it has alone, so each prompt's numbers are those of its own forward.
    """
    import torch

    lengths = [len(ids) for ids in batch]
    width = max(lengths)
    tokens = torch.zeros((len(batch), width), dtype=torch.long, device=device)
    for row, ids in enumerate(batch):
        tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    if min(lengths) == width:
        return tokens, None
    ends = torch.tensor(lengths, device=device)[:, None]
    return tokens, (torch.arange(width, device=device) < ends).long()


def batched_run(
    forward: Callable[[list[list[int]]], list[Capture]], d_vocab: int, batch: Sequence[list[int]]
) -> list[Capture]:
    """``forward`` over :func:`plan_batches` groups, results back in ``batch`` order."""
    out: dict[int, Capture] = {}
    for group in plan_batches([len(ids) for ids in batch], batch_token_budget(d_vocab)):
        out.update(zip(group, forward([batch[i] for i in group])))
    return [out[i] for i in range(len(batch))]


def split_rows(
    layers: Sequence[torch.Tensor], logits: torch.Tensor, lengths: Sequence[int]
) -> list[Capture]:
    """Per prompt of a padded batch: its residuals [T, d] and fp32 logits [T, V]."""
    import torch

    # One stack and one unbind per row: indexing every layer of every row costs ~7 us a
    # view, 7% of a default-suite run at 31 layers x 15 prompts.
    stacked = torch.stack(list(layers))  # [L+1, B, T, d]
    return [
        Capture(residuals=list(stacked[:, row, :n].unbind(0)), logits=logits[row, :n].float())
        for row, n in enumerate(lengths)
    ]


def run_each(run: Callable[[list[int]], Capture], batch: Sequence[list[int]]) -> list[Capture]:
    """One forward pass per prompt: backends whose library cannot pad a batch."""
    return [run(ids) for ids in batch]


def library_versions(*dists: str) -> dict[str, str]:
    """Installed versions of ``dists`` (``"absent"`` when not installed)."""
    return {dist: _installed_version(dist) for dist in dists}


@functools.cache
def _installed_version(dist: str) -> str:
    """Read once per process: every prompt's JSON names the versions, and reading the
    package metadata took 5 ms a prompt (a tenth of a 16-prompt suite's bookkeeping)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
