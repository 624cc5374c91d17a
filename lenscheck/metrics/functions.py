"""One pure function per measurement of the extended next-token metrics, in fp32.

Each takes tensors (log-probabilities, logits, residuals; a leading layer axis where it
says ``[L+1, ...]``) and returns a tensor or plain Python values; none reads a file, a
model or a configuration. The property tests (tests/test_metric_functions.py) pin what
each must satisfy whatever its input. Distributions are passed as log-softmax outputs
(``logp``): the caller computes that once per row and every statistic below reads it.
Each takes one [L+1, V] temporary where it can and works on it in place (the same
operations, so the same bits): every fresh [L+1, V] buffer is new pages from the OS on a
CPU, which cost more than the arithmetic (a 16-prompt suite: 0.7 s of its 12 s).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lenscheck.numerics import top_k

if TYPE_CHECKING:
    import torch

__all__ = [
    "answer_rank",
    "control_margin",
    "control_summary",
    "copy_soft",
    "copy_strict",
    "cosine",
    "entropy_bits_of",
    "first_layer",
    "is_plain_text_token",
    "js_divergence_bits",
    "kl_bits_of",
    "l1_prob_diff",
    "logit_gap_to_second",
    "logit_gap_to_top1",
    "p_of",
    "p_topk",
    "topk_ids",
    "topk_jaccard",
]

_LN2 = math.log(2.0)


def _masked_sum(terms: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The sum over the last axis of terms p * (...), an id with p = 0 adding 0.

    Only an id P masks (p = 0, log p = -inf) makes a term NaN (0 * inf); every other p = 0
    term is already 0. So the terms are summed as they are and masked only when a sum is
    NaN: the same bits as masking first, two passes fewer per distribution."""
    import torch

    total = terms.sum(-1)
    if bool(torch.isnan(total).any()):
        total = torch.where(p > 0, terms, torch.zeros_like(terms)).sum(-1)
    return total


def entropy_bits_of(logp: torch.Tensor, p: torch.Tensor | None = None) -> torch.Tensor:
    """H(P) in bits over the last axis, from log-probabilities (a masked -inf id adds 0).
    ``p``: ``logp.exp()`` when the caller has it (the same bits).

    Through the top-1, as lenscheck.numerics.entropy_from_top1: with t the largest log p,
    H = -t + sum p * (t - log p), two non-negative terms (no cancellation), one product
    per id instead of a log; the same formula as the records' entropies, so the two files
    agree to rounding.
    """
    p = logp.exp() if p is None else p
    top = logp.amax(-1, keepdim=True)
    total = _masked_sum((logp - top).mul_(p), p)
    return ((-total - top.squeeze(-1)) / _LN2).clamp_min(0.0) + 0.0


def kl_bits_of(
    logp: torch.Tensor, logq: torch.Tensor, p: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(P || Q) in bits over the last axis, clamped at 0; an id P masks adds 0.
    ``p``: ``logp.exp()`` when the caller has it (the same bits)."""
    p = logp.exp() if p is None else p
    total = _masked_sum((logp - logq).mul_(p), p)
    return (total / _LN2).clamp_min(0.0) + 0.0


def js_divergence_bits(
    logp: torch.Tensor,
    logq: torch.Tensor,
    p: torch.Tensor | None = None,
    q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Jensen-Shannon divergence in bits: the mean KL of P and Q to M = (P + Q) / 2, M
    renormalized (it sums to 1 up to rounding); in [0, 1]. ``p``, ``q``: the exps of
    ``logp``, ``logq`` when the caller has them (the same bits)."""
    import torch

    p = logp.exp() if p is None else p
    q = logq.exp() if q is None else q
    m = torch.add(p, q).div_(2)
    logm = m.div_(m.sum(-1, keepdim=True)).log_()
    return ((kl_bits_of(logp, logm, p) + kl_bits_of(logq, logm, q)) / 2).clamp(0.0, 1.0)


def l1_prob_diff(
    logp: torch.Tensor,
    logq: torch.Tensor,
    p: torch.Tensor | None = None,
    q: torch.Tensor | None = None,
) -> torch.Tensor:
    """sum |P - Q| over the last axis: in [0, 2]. ``p``, ``q`` as for js_divergence_bits."""
    p = logp.exp() if p is None else p
    q = logq.exp() if q is None else q
    return (p - q).abs_().sum(-1).clamp(0.0, 2.0)


def p_topk(logp: torch.Tensor, k: int) -> torch.Tensor:
    """The sum of the ``k`` largest probabilities (k = 1: the largest), in [0, 1]."""
    return top_k(logp, min(k, logp.shape[-1]))[0].exp().sum(-1).clamp(0.0, 1.0)


def p_of(logp: torch.Tensor, token: int) -> torch.Tensor:
    """P[token] over the last axis."""
    return logp[..., token].exp()


def answer_rank(logits: torch.Tensor, token: int) -> torch.Tensor:
    """1 + the number of ids whose logit is strictly larger than ``token``'s (rank 1: top-1)."""
    return (logits > logits[..., token : token + 1]).sum(-1) + 1


def logit_gap_to_second(logits: torch.Tensor) -> torch.Tensor:
    """The largest logit minus the second largest (>= 0)."""
    top2 = top_k(logits, 2)[0]
    return top2[..., 0] - top2[..., 1]


def logit_gap_to_top1(logits: torch.Tensor, token: int) -> torch.Tensor:
    """``token``'s logit minus the largest (<= 0)."""
    return logits[..., token] - logits.amax(-1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of ``a`` and ``b`` over the last axis, in [-1, 1] (0 for a zero vector), in
    float64. ``b`` may be one vector for every row of ``a``: a matrix-vector product then,
    without the [rows, V] float64 copy of ``b`` and product (10x faster on a CPU)."""
    import torch

    a, b = a.double(), b.double()
    denom = a.norm(dim=-1) * b.norm(dim=-1)
    dot = a @ b if b.dim() == 1 else (a * b).sum(-1)
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, dot / safe, torch.zeros_like(dot)).clamp(-1.0, 1.0).float()


def topk_ids(logits: torch.Tensor, k: int) -> list[set[int]]:
    """The id set of the ``k`` largest logits of each row of a [rows, V] tensor."""
    import torch

    ids = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).indices
    return [set(row) for row in ids.tolist()]


def topk_jaccard(a: set[int], b: set[int]) -> float:
    """|A ∩ B| / |A ∪ B|, in [0, 1] (1.0 for two empty sets)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def is_plain_text_token(text: str) -> bool:
    """Whether a decoded token holds a character that is neither whitespace nor
    punctuation (a copy of ``,`` or a space is not a copy of the prompt's words)."""
    return any(not ch.isspace() and not unicodedata.category(ch).startswith("P") for ch in text)


def copy_strict(
    top1: int, p1: float, p2: float, prompt_ids: set[int], text: str, tau: float, margin: float
) -> bool:
    """The strict copy rule at threshold ``tau``: top-1 among the prompt's ids, p1 > tau,
    p1 - p2 > ``margin``, and the token is not whitespace or punctuation only."""
    return top1 in prompt_ids and p1 > tau and p1 - p2 > margin and is_plain_text_token(text)


def _contiguous_in(window: Sequence[int], sequence: Sequence[int]) -> bool:
    n = len(window)
    return any(list(sequence[i : i + n]) == list(window) for i in range(len(sequence) - n + 1))


def copy_soft(top1s: Sequence[int], p1: float, prompt_seq: Sequence[int], tau: float) -> bool:
    """The soft copy rule over a window: ``top1s`` (the last K layers' top-1 ids, oldest
    first) form a contiguous subsequence of the prompt's ids, and p1 (the last layer's)
    > ``tau``. An empty window never copies."""
    return bool(top1s) and p1 > tau and _contiguous_in(top1s, prompt_seq)


def first_layer(values: Sequence[bool], start: int = 0) -> int | None:
    """The first index from ``start`` whose value is true, else None."""
    return next((n for n, v in enumerate(values) if n >= start and v), None)


def control_margin(
    logp: torch.Tensor, own: int, other: int, p: torch.Tensor | None = None
) -> torch.Tensor:
    """P[own] - P[other] per row ``[L+1, V] -> [L+1]``: a control prompt's margin of its own
    answer over the controlled prompt's; in [-1, 1], 0 when the ids are equal. ``p``:
    ``logp.exp()`` when the caller has it (the same bits)."""
    p = logp.exp() if p is None else p
    return (p[..., own] - p[..., other]).clamp(-1.0, 1.0)


def control_summary(margins: Sequence[float | None]) -> dict[str, float | int | None]:
    """The first layer whose margin is positive, the largest margin and its (first) layer
    (all None when no margin is known)."""
    known = [(m, n) for n, m in enumerate(margins) if m is not None]
    if not known:
        return {
            "first_positive_margin_layer": None,
            "max_control_margin": None,
            "max_control_margin_layer": None,
        }
    top, layer = max(known, key=lambda mn: (mn[0], -mn[1]))
    return {
        "first_positive_margin_layer": first_layer([m is not None and m > 0 for m in margins]),
        "max_control_margin": top,
        "max_control_margin_layer": layer,
    }
