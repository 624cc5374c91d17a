"""Entropy and KL in bits, top-k with full-softmax probabilities, unembedding casts.

All statistics are computed in fp32 whatever the model's dtype: bf16/fp16 softmax
over a 100k+ vocabulary loses the tail mass that entropy is made of.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

from lenscheck._validate import describe

# torch is imported inside the functions that need it: `import lenscheck` imports this
# module and must stay free of torch.
if TYPE_CHECKING:
    import torch

__all__ = [
    "LN2",
    "TopK",
    "bits_entropy_from_logits",
    "check_finite_logits",
    "entropy_bits",
    "entropy_from_probs",
    "entropy_from_top1",
    "kl_bits",
    "safe_cast_for_unembed",
    "softmax_entropy",
    "top_k",
    "topk_probs",
]

LN2 = math.log(2.0)
# Added inside the log so that a zero probability contributes 0 * finite = 0, never NaN.
# 1e-40 is a subnormal fp32 value, as in the original pipeline.
_LOG_EPS = 1e-40
#: In float32, p + 1e-40 rounds to p itself for every p >= 2**-108 (1e-40 is under half its
#: ulp there), so the sum only needs computing below.
_EPS_CHANGES_BELOW = 2.0**-108


class TopK(NamedTuple):
    """Top-k ids by logit and their probabilities under the full softmax."""

    ids: torch.Tensor
    probs: torch.Tensor


def check_finite_logits(logits: torch.Tensor, name: str = "logits") -> None:
    """Raise ValueError if ``logits`` holds NaN or +inf (-inf is a legitimate mask)."""
    import torch

    if torch.isnan(logits).any():
        raise ValueError(f"{name} contains NaN; expected finite values or -inf for masked ids")
    if torch.isposinf(logits).any():
        raise ValueError(f"{name} contains +inf; expected finite values or -inf for masked ids")
    if bool(torch.isneginf(logits).all(dim=-1).any()):
        raise ValueError(f"{name} has a row where every value is -inf: no distribution to measure")


def entropy_bits(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits over the last dimension, batched; fp32 result."""
    import torch

    check_finite_logits(logits)
    return entropy_from_probs(torch.softmax(logits.float(), dim=-1))


def entropy_from_probs(probs: torch.Tensor, work: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy in bits of distributions ``probs`` (a softmax output) over the last dimension.

    Never NaN and never -0.0: terms are p * log(p + 1e-40) <= 0, so the sum's
    negation is >= 0, and adding 0.0 turns a -0.0 (a one-hot row) into 0.0. The terms are built
    in one buffer (same operations, same order, so the same bits as the plain expression):
    over hundreds of rows of a 100k vocabulary the temporaries cost more than the math.
    ``work``: a scratch buffer of ``probs``' shape and dtype for the terms (overwritten).
    """
    import torch

    if probs.dtype == torch.float32:
        # p + 1e-40, adding 1e-40 only where it changes p (p + 0.0 is p itself): adding the
        # subnormal 1e-40 to every value took the CPU's slow subnormal path for each one.
        terms = torch.zeros_like(probs) if work is None else work.zero_()
        terms.masked_fill_(torch.lt(probs, _EPS_CHANGES_BELOW), _LOG_EPS).add_(probs)
    else:
        terms = torch.add(probs, _LOG_EPS, out=work)  # out=None: a new tensor
    terms.log_().mul_(probs)
    return -terms.sum(dim=-1) / LN2 + 0.0


def entropy_from_top1(
    probs: torch.Tensor,
    logits: torch.Tensor,
    top_ids: torch.Tensor,
    work: torch.Tensor | None = None,
) -> torch.Tensor:
    """Entropy in bits of ``probs`` = softmax(``logits``) over the last dimension, through
    the top-1 (``top_ids[..., :1]``, the largest logit's id).

    With m the largest logit, the softmax gives p_max = exp(0) / Z exactly, so
    H = -log p_max + sum p * (m - z) (nats): two non-negative terms, no cancellation, and one
    subtraction and one dot product instead of a log per id (5x cheaper on the embedded
    model). Against a float64 reference it errs less than the p * log p form (5.7e-5 vs
    8.2e-5 bits, the embedded model's worst row). A masked (-inf) id makes 0 * inf: such a
    row set, and a NaN one, falls back to :func:`entropy_from_probs`. ``work``: a buffer of
    ``logits``' shape for z - m (it may be ``logits`` itself, which is then overwritten).
    """
    import torch

    top = top_ids[..., :1]
    m = logits.gather(-1, top).float()
    p_max = probs.gather(-1, top).squeeze(-1)
    shifted = torch.sub(logits, m, out=work) if work is not None else logits.float() - m
    # sum p * (z - m) <= 0, its negation the second term; mul + sum beat vecdot by 10%.
    ent = (torch.mul(probs, shifted, out=shifted).sum(-1).neg_() - p_max.log()) / LN2 + 0.0
    if not bool(torch.isfinite(ent).all()):
        return entropy_from_probs(probs, work=shifted)  # shifted is scratch by now
    return ent


def softmax_entropy(
    probs: torch.Tensor,
    logits: torch.Tensor,
    top_ids: torch.Tensor,
    *,
    original: bool = False,
    work: torch.Tensor | None = None,
) -> torch.Tensor:
    """Entropy in bits of ``probs`` = softmax(``logits``): lenscheck's
    :func:`entropy_from_top1`, or with ``original`` the original pipeline's
    -sum p * log(p + 1e-40) (:func:`entropy_from_probs`), which its preset keeps bit for bit.
    """
    if original:
        return entropy_from_probs(probs, work=work)
    return entropy_from_top1(probs, logits, top_ids, work=work)


def bits_entropy_from_logits(logits: torch.Tensor) -> float:
    """Entropy in bits of ``softmax(logits)`` for a 1-D logits vector (the original
    pipeline's API)."""
    if getattr(logits, "ndim", None) != 1:
        raise ValueError(
            f"logits must be a 1-D tensor of vocabulary logits, got {describe(logits)}"
        )
    return float(entropy_bits(logits).item())


def kl_bits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) in bits over the last dimension, P and Q given as logits; fp32, >= 0."""
    import torch

    if p_logits.shape != q_logits.shape:
        raise ValueError(
            f"p_logits and q_logits must have the same shape, got {tuple(p_logits.shape)} "
            f"and {tuple(q_logits.shape)}"
        )
    logp = torch.log_softmax(p_logits.float(), dim=-1)
    logq = torch.log_softmax(q_logits.float(), dim=-1)
    # In place on one temporary: each fresh [T, V] buffer is new pages on a CPU.
    terms = logq.neg_().add_(logp).mul_(logp.exp())
    # An id that P masks (-inf) has p = 0 and contributes 0, even where Q masks it too
    # (0 * (-inf - -inf) would be NaN); p > 0 where q = 0 still gives +inf.
    terms.masked_fill_(torch.isneginf(logp), 0.0)
    kl = terms.sum(dim=-1) / LN2
    return kl.clamp_min(0.0)


#: Width of the blocks whose maxima :func:`top_k` ranks first.
_TOPK_BLOCK = 64


def top_k(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(x, k)`` over the last dimension (largest first): its values exactly, its
    ids too except the order among exactly equal values, at a third of its cost on a CPU.

    The k largest values lie in the k blocks (of 64) with the largest maxima: a block holding
    one of them has a maximum at least the k-th value, and fewer than k blocks can exceed it.
    So one max pass, a top-k of [rows, V/64] maxima and one of k * 64 candidates replace a
    top-k of every row (torch's CPU top-k partially sorts the whole row: 15 ms for 170 rows
    of a 49,152-word vocabulary, this 5.8 ms). Elsewhere (a GPU, a short row) torch.topk.
    """
    import torch

    width = x.shape[-1]
    blocks = width // _TOPK_BLOCK
    if x.device.type != "cpu" or blocks < 4 * k:
        values, ids = torch.topk(x, k)
        return values, ids
    rows = x.reshape(-1, width)
    body = rows[:, : blocks * _TOPK_BLOCK].reshape(rows.shape[0], blocks, _TOPK_BLOCK)
    _, best = torch.topk(body.amax(-1), k)
    offsets = torch.arange(_TOPK_BLOCK, device=x.device)
    cand_ids = (best[:, :, None] * _TOPK_BLOCK + offsets).reshape(rows.shape[0], -1)
    tail = blocks * _TOPK_BLOCK
    if tail < width:  # the last, partial block is always a candidate
        rest = torch.arange(tail, width, device=x.device).expand(rows.shape[0], -1)
        cand_ids = torch.cat([cand_ids, rest], dim=1)
    values, pick = torch.topk(rows.gather(1, cand_ids), k)
    ids = cand_ids.gather(1, pick)
    return values.reshape(*x.shape[:-1], k), ids.reshape(*x.shape[:-1], k)


def topk_probs(logits: torch.Tensor, k: int, probs: torch.Tensor | None = None) -> TopK:
    """Top-``k`` ids by logit over the last dimension, with full-softmax probabilities.

    ``probs``: ``softmax(logits.float())`` when the caller has it already (same values).
    """
    import torch

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, logits.shape[-1])
    x = logits.float()
    _, ids = top_k(x, k)  # the last dimension, largest first
    # Gathered from the full softmax (max-shifted, as the entropy uses): exp(x - logsumexp(x))
    # loses |x| * 2^-24 of relative precision, 1e-4 for logits near 1e4.
    dist = torch.softmax(x, dim=-1) if probs is None else probs
    return TopK(ids=ids, probs=dist.gather(-1, ids))


def safe_cast_for_unembed(
    resid: torch.Tensor, W_U: torch.Tensor, *, force_fp32_unembed: bool = False
) -> torch.Tensor:
    """Cast the residual to the dtype the unembedding expects.

    Float W_U: cast to W_U's dtype, or to fp32 when ``force_fp32_unembed`` and W_U
    is fp32 already (the caller promoted it). Quantized (integer) W_U: leave the
    activations alone, the int8/4-bit kernels expect float inputs.
    """
    import torch

    if force_fp32_unembed and W_U.dtype == torch.float32:
        return resid.float()
    if torch.is_floating_point(W_U):
        return resid.to(dtype=W_U.dtype)
    return resid
