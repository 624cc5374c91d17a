"""Copy-collapse and semantic-collapse rules, and the per-model collapse summary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from lenscheck._validate import check_unit_interval, describe
from lenscheck.numerics import check_finite_logits, topk_probs
from lenscheck.vocab import DEFAULT_COPY_MARGIN, DEFAULT_COPY_THRESHOLD

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_COPY_MARGIN",
    "DEFAULT_COPY_THRESHOLD",
    "ENTROPY_COLLAPSE_BITS",
    "collapse_flags",
    "detect_copy_collapse",
    "is_semantic_top1",
    "summarize_collapse",
]

ENTROPY_COLLAPSE_BITS = 1.0


def collapse_flags(
    top1_id: int,
    p1: float,
    p2: float,
    entropy_bits: float | None,
    prompt_token_ids: Iterable[int],
    *,
    copy_threshold: float,
    copy_margin: float,
    entropy_fallback_threshold: float | None = ENTROPY_COLLAPSE_BITS,
) -> bool:
    """The copy-collapse rule on already-computed top-2 statistics.

    Prompt echo: top-1 id is a prompt id, p1 > threshold and p1 - p2 > margin.
    Fallback (as the original): entropy strictly below the fallback threshold.
    """
    # int() each id: a tensor (or numpy array) of ids iterates as 0-d tensors, which hash by
    # identity and would never match top1_id.
    ids = (
        prompt_token_ids
        if isinstance(prompt_token_ids, (set, frozenset))
        else {int(i) for i in prompt_token_ids}
    )
    echo = top1_id in ids and p1 > copy_threshold and (p1 - p2) > copy_margin
    if echo:
        return True
    if entropy_fallback_threshold is None or entropy_bits is None:
        return False
    return entropy_bits < entropy_fallback_threshold


def detect_copy_collapse(
    logits: torch.Tensor,
    prompt_token_ids: Iterable[int],
    *,
    copy_threshold: float,
    copy_margin: float,
    entropy_bits: float | None = None,
    entropy_fallback_threshold: float | None = ENTROPY_COLLAPSE_BITS,
) -> bool:
    """Is the next-token distribution ``softmax(logits)`` copy-collapsed onto the prompt?

    ``logits`` is the 1-D vocabulary vector of one position. ``entropy_bits`` enables
    the entropy fallback; pass ``entropy_fallback_threshold=None`` to disable it.
    """
    if getattr(logits, "ndim", None) != 1 or logits.shape[0] < 2:
        raise ValueError(f"logits must be a 1-D tensor with >= 2 entries, got {describe(logits)}")
    threshold = check_unit_interval("copy_threshold", copy_threshold)
    margin = check_unit_interval("copy_margin", copy_margin)
    check_finite_logits(logits)
    top = topk_probs(logits, 2)
    return collapse_flags(
        int(top.ids[0]),
        float(top.probs[0]),
        float(top.probs[1]),
        entropy_bits,
        prompt_token_ids,
        copy_threshold=threshold,
        copy_margin=margin,
        entropy_fallback_threshold=entropy_fallback_threshold,
    )


def is_semantic_top1(top1_text: str, ground_truth: str) -> bool:
    """Does the decoded top-1 token equal the ground truth once whitespace is trimmed?"""
    return top1_text.strip() == ground_truth.strip()


def _first_layer(records: Iterable[Mapping[str, Any]], flag: str) -> int | None:
    for rec in records:
        if rec.get(flag):
            return int(rec["layer"])
    return None


def summarize_collapse(pure_records: Iterable[Mapping[str, Any]]) -> dict[str, int | None]:
    """L_copy, L_copy_H, L_semantic (first layer with each flag) and delta_layers."""
    recs = list(pure_records)
    l_copy = _first_layer(recs, "copy_collapse")
    l_sem = _first_layer(recs, "is_answer")
    return {
        "L_copy": l_copy,
        "L_copy_H": _first_layer(recs, "entropy_collapse"),
        "L_semantic": l_sem,
        "delta_layers": None if l_copy is None or l_sem is None else l_sem - l_copy,
    }
