"""The rows of the two CSVs: a record per (layer, position), a pure next-token row per layer
with its collapse flags."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lenscheck.collapse import ENTROPY_COLLAPSE_BITS, collapse_flags, is_semantic_top1
from lenscheck.prompts import is_verbose_position
from lenscheck.vocab import SCHEMA_ORIGINAL

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import LensBackend
    from lenscheck.config import LensConfig
    from lenscheck.lens.stats import LensStats

__all__ = [
    "NEXT_TOKEN",
    "PURE_TOP_K",
    "embedding_echo",
    "first_rule_layer",
    "pure_records",
    "records",
    "topk_pairs",
]

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


def first_rule_layer(cfg: LensConfig) -> int:
    """The first layer the collapse rules apply to: layer 0 is the embeddings, and where the
    unembedding is (nearly) the embedding matrix the input token decodes with p ~ 1 there,
    an identity rather than a collapse (the original schema counted it)."""
    return 0 if cfg.schema == SCHEMA_ORIGINAL else 1


def _flags(
    backend: LensBackend,
    cfg: LensConfig,
    prompt_ids: set[int],
    top: tuple[list[int], list[float]],
    entropy: float,
) -> dict[str, bool]:
    """The three collapse flags of one next-token row, by the rule (no layer exception)."""
    ids, probs = top
    return {
        "copy_collapse": collapse_flags(
            ids[0],
            probs[0],
            probs[1],
            entropy,
            prompt_ids,
            copy_threshold=cfg.copy_threshold,
            copy_margin=cfg.copy_margin,
        ),
        "entropy_collapse": entropy <= ENTROPY_COLLAPSE_BITS,
        "is_answer": is_semantic_top1(backend.decode(ids[0]), cfg.ground_truth),
    }


def pure_records(
    backend: LensBackend,
    cfg: LensConfig,
    prompt_ids: set[int],
    ent: torch.Tensor,
    top_ids: list[list[list[int]]],
    top_p: list[list[list[float]]],
) -> list[dict[str, Any]]:
    """One row per layer at the last position, with the copy and entropy collapse flags
    (False below :func:`first_rule_layer`)."""
    out = []
    last = len(top_ids[0]) - 1
    start = first_rule_layer(cfg)
    for layer, (layer_ids, layer_p) in enumerate(zip(top_ids, top_p)):
        ids, probs = layer_ids[last], layer_p[last]
        e = float(ent[layer, last].item())
        flags = _flags(backend, cfg, prompt_ids, (ids, probs), e)
        out.append(
            {
                "type": "pure_next_token_record",
                "layer": layer,
                "pos": last,
                "token": NEXT_TOKEN,
                "entropy": e,
                "topk": topk_pairs(backend, ids[:PURE_TOP_K], probs[:PURE_TOP_K]),
                **(flags if layer >= start else dict.fromkeys(flags, False)),
            }
        )
    return out


def embedding_echo(
    backend: LensBackend, cfg: LensConfig, prompt_ids: set[int], st: LensStats
) -> dict[str, Any]:
    """What layer 0 (the embeddings) decodes to at the next-token position, reported apart
    from the collapse rules: its top-1, p(top-1), whether that is a prompt token, and which
    of the rules would have fired there."""
    ids, probs = st.top_ids[0, -1].tolist(), st.top_probs[0, -1].tolist()
    entropy = float(st.entropy[0, -1])
    return {
        "top1": backend.decode(ids[0]),
        "p_top1": probs[0],
        "top1_in_prompt": ids[0] in prompt_ids,
        **_flags(backend, cfg, prompt_ids, (ids, probs), entropy),
    }
