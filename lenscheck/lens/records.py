"""The rows of the two CSVs: a record per (layer, position), a pure next-token row per layer
with its collapse flags."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lenscheck.collapse import ENTROPY_COLLAPSE_BITS, collapse_flags, is_semantic_top1
from lenscheck.prompts import is_verbose_position

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import LensBackend
    from lenscheck.config import LensConfig

__all__ = ["NEXT_TOKEN", "PURE_TOP_K", "pure_records", "records", "topk_pairs"]

NEXT_TOKEN = "⟨NEXT⟩"
#: Top-k pairs of a pure next-token row.
PURE_TOP_K = 5


def topk_pairs(backend: LensBackend, ids: list[int], probs: list[float]) -> list[list[Any]]:
    """[[token text, probability], ...] of ``ids``, decoded one at a time."""
    return [[backend.decode(i), p] for i, p in zip(ids, probs)]


def records(
    backend: LensBackend,
    cfg: LensConfig,
    ids: list[int],
    ent: torch.Tensor,
    top_ids: list[list[list[int]]],
    top_p: list[list[list[float]]],
) -> list[dict[str, Any]]:
    """One record per (layer, position): entropy and the top-k (longer at verbose positions)."""
    labels = [backend.token_text(i) for i in ids]
    ent_list = ent.tolist()
    ks = [
        cfg.top_k_verbose if is_verbose_position(pos, labels[pos], len(ids)) else cfg.top_k_record
        for pos in range(len(ids))
    ]
    out = []
    for layer, (layer_ids, layer_p) in enumerate(zip(top_ids, top_p)):
        for pos, k in enumerate(ks):
            out.append(
                {
                    "type": "record",
                    "layer": layer,
                    "pos": pos,
                    "token": labels[pos],
                    "entropy": ent_list[layer][pos],
                    "topk": topk_pairs(backend, layer_ids[pos][:k], layer_p[pos][:k]),
                }
            )
    return out


def pure_records(
    backend: LensBackend,
    cfg: LensConfig,
    prompt_ids: set[int],
    ent: torch.Tensor,
    top_ids: list[list[list[int]]],
    top_p: list[list[list[float]]],
) -> list[dict[str, Any]]:
    """One row per layer at the last position, with the copy and entropy collapse flags."""
    out = []
    last = len(top_ids[0]) - 1
    for layer, (layer_ids, layer_p) in enumerate(zip(top_ids, top_p)):
        ids, probs = layer_ids[last], layer_p[last]
        e = float(ent[layer, last].item())
        pairs = topk_pairs(backend, ids[:PURE_TOP_K], probs[:PURE_TOP_K])
        out.append(
            {
                "type": "pure_next_token_record",
                "layer": layer,
                "pos": last,
                "token": NEXT_TOKEN,
                "entropy": e,
                "topk": pairs,
                "copy_collapse": collapse_flags(
                    ids[0],
                    probs[0],
                    probs[1],
                    e,
                    prompt_ids,
                    copy_threshold=cfg.copy_threshold,
                    copy_margin=cfg.copy_margin,
                ),
                "entropy_collapse": e <= ENTROPY_COLLAPSE_BITS,
                "is_answer": is_semantic_top1(pairs[0][0], cfg.ground_truth),
            }
        )
    return out
