"""The decoding-point ablation: the logit lens at the last position under every decoding
point (next-ln1, final, raw), whatever lens a run reads; the same block in every lens' JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from lenscheck.collapse import is_semantic_top1
from lenscheck.lens.probes import softmax_stats
from lenscheck.lens.records import first_rule_layer
from lenscheck.norms import DECODE_NORMS, apply_norm_or_skip, decode_norm_modules
from lenscheck.vocab import FINAL, NEXT_LN1, SCHEMA_ORIGINAL

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import Capture, LensBackend
    from lenscheck.config import LensConfig
    from lenscheck.lens.stats import Scratch
    from lenscheck.suites import PromptCase

__all__ = [
    "ABLATION_RULE",
    "PointStats",
    "ablation",
    "onset_tolerance",
    "point_logits",
    "point_rows",
    "split_points",
]

ABLATION_RULE = (
    "onset_disagreement: L_semantic under next-ln1 and under final differ by more than "
    "max(2, ceil(num_layers / 10)) layers, or only one of them exists"
)


class PointStats(NamedTuple):
    """A decoding point's softmax statistics at the last position, per layer, that a lens
    pass took already (the run's logit lens at its point): the ablation reads them instead
    of a softmax of its own, so it names the records' top-1 among tied logits and reports
    the same numbers as the pure CSV."""

    probs: torch.Tensor  # [L+1, V]
    top1: list[int]
    top2_probs: torch.Tensor  # [L+1, 2] the two largest probabilities
    entropy: torch.Tensor  # [L+1] bits


def point_rows(
    backend: LensBackend, mains: Sequence[Capture], points: Sequence[str]
) -> torch.Tensor | None:
    """The rows :func:`point_logits` unembeds: per decoding point (in order), per prompt,
    each layer's residual at the prompt's last position through the point's norm,
    [points * prompts * (L+1), d]; None without points."""
    import torch

    rows = []
    for point in points:
        norms = decode_norm_modules(backend.stack, point)
        for c in mains:
            rows += [apply_norm_or_skip(r[-1:], m) for r, m in zip(c.residuals, norms)]
    return torch.cat(rows) if rows else None


def split_points(
    logits: torch.Tensor, prompts: int, points: Sequence[str]
) -> dict[str, list[torch.Tensor]]:
    """:func:`point_rows`' logits per decoding point and prompt, [L+1, V] each."""
    per_prompt = iter(logits.split(logits.shape[0] // max(1, prompts * len(points))))
    return {point: [next(per_prompt) for _ in range(prompts)] for point in points}


def point_logits(
    backend: LensBackend,
    mains: Sequence[Capture],
    points: Sequence[str],
    scratch: Scratch | None = None,
) -> dict[str, list[torch.Tensor]]:
    """Per decoding point and prompt, lens logits [L+1, V] at the prompt's last position.

    One unembedding for every point: each call streams all of W_U for a few dozen rows
    (a run whose logit lens unembeds in fp32 reads these rows in its own chunks instead:
    lenscheck.lens.pipeline). ``scratch``: the logits go into its ``"points"`` buffer
    where the unembedding can write in place (valid until the next call with it).
    """
    x = point_rows(backend, mains, points)
    if x is None:
        return {}
    out = None
    if scratch is not None:
        out = scratch.take("points", x.shape[0], backend.facts.d_vocab, x.device)
    # In float32: these are a few rows, and a raw residual overflows half precision's range.
    logits = backend.unembed(x, fp32=True, out=out)
    return split_points(logits, len(mains), points)


def onset_tolerance(num_layers: int) -> int:
    """Layers by which the two normed decoding points' L_semantic may differ (ABLATION_RULE)."""
    return max(2, math.ceil(num_layers / 10))


def _work(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two fp32 [L+1, V] buffers every point's softmax statistics reuse (fresh ones per
    point are new pages from the OS on a CPU)."""
    import torch

    return torch.empty_like(logits, dtype=torch.float32), torch.empty_like(
        logits, dtype=torch.float32
    )


def _point_stats(
    logits: torch.Tensor, original: bool, work: tuple[torch.Tensor, torch.Tensor]
) -> PointStats:
    """A point's statistics from its logits, the top-1 by the top-2 of its softmax."""
    dist, top, entropy = softmax_stats(logits, 2, original=original, work=work)
    return PointStats(dist, top.ids.T[0].tolist(), top.probs, entropy)


def ablation(
    backend: LensBackend,
    cfg: LensConfig,
    case: PromptCase,
    answer: dict[str, Any],
    by_point: dict[str, torch.Tensor],
    known: dict[str, PointStats] | None = None,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """The decoding-point block of the diagnostics, and p(answer) per layer per point.
    ``known``: a point's statistics taken already (see PointStats); every other point's
    come from a softmax of its logits here."""
    pieces = answer["ground_truth_token_ids"]
    block: dict[str, Any] = {"chosen": cfg.decode_norm, "rule": ABLATION_RULE}
    p_answer: dict[str, list[float]] = {}
    original = cfg.schema == SCHEMA_ORIGINAL
    work: tuple[torch.Tensor, torch.Tensor] | None = None
    for point in DECODE_NORMS:
        logits = by_point[point]
        stats = (known or {}).get(point)
        if stats is None:
            if work is None:
                work = _work(logits)
            stats = _point_stats(logits, original, work)
        p_top1, p_top2 = stats.top2_probs.T.tolist()
        top1 = [backend.decode(i) for i in stats.top1]
        start = first_rule_layer(cfg)
        onset = next(
            (n for n, t in enumerate(top1) if n >= start and is_semantic_top1(t, case.answer)),
            None,
        )
        if pieces:
            target = logits[:, pieces[0] : pieces[0] + 1]
            # Counted here, not by lenscheck.metrics.functions.answer_rank: the generated
            # test_measurements checks the extended columns' ranks against this block, so
            # a slip in either shows as a disagreement (METRIC_FAULTS answer-rank-off-by-one).
            rank: list[int | None] = ((logits > target).sum(-1) + 1).tolist()
            p_answer[point] = stats.probs[:, pieces[0]].tolist()
        else:
            rank = [None] * logits.shape[0]
            p_answer[point] = [0.0] * logits.shape[0]
        block[point] = {
            "L_semantic": onset,
            "top1": top1,
            "p_top1": p_top1,
            "p_top2": p_top2,
            "entropy": stats.entropy.tolist(),
            "p_answer": p_answer[point],
            "answer_rank": rank,
        }
    a, b = block[NEXT_LN1]["L_semantic"], block[FINAL]["L_semantic"]
    limit = onset_tolerance(backend.facts.num_layers)
    block["onset_disagreement"] = (a is None) != (b is None) or (
        a is not None and b is not None and abs(a - b) > limit
    )
    return block, p_answer
