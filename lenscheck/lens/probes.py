"""The model's own next-token distributions: probe prompts, temperatures, final prediction.

These read the model's logits, not a lens: every lens of a run reports the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lenscheck.lens.records import topk_pairs
from lenscheck.numerics import TopK, check_finite_logits, softmax_entropy, topk_probs
from lenscheck.prompts import TEMPERATURES
from lenscheck.vocab import SCHEMA_ORIGINAL

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import LensBackend
    from lenscheck.config import LensConfig

__all__ = ["distribution", "probes", "softmax_stats"]

_TEST_TOP_K, _TEMP_TOP_K, _FINAL_TOP_K = 10, 15, 20


def softmax_stats(
    logits: torch.Tensor,
    k: int,
    *,
    original: bool = False,
    work: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, TopK, torch.Tensor]:
    """The softmax of ``logits`` (refused as ``entropy_bits`` refuses them), its top-``k``
    and its entropy in bits: one softmax for all three, the same values as computing each
    alone. ``original``: the original pipeline's entropy formula (see softmax_entropy).
    ``work``: two fp32 buffers of ``logits``' shape, for the softmax (returned) and the
    entropy's scratch, reused by a caller that takes several (the same values).

    Only logits ``entropy_bits`` refuses (NaN, +inf, a row of -inf only) give a non-finite
    entropy, so they are checked only then: three passes fewer over valid logits.
    """
    import torch

    out, scratch = work if work is not None else (None, None)
    dist = torch.softmax(logits.float(), dim=-1, out=out)
    top = topk_probs(logits, k, probs=dist)
    entropy = softmax_entropy(dist, logits, top.ids, original=original, work=scratch)
    if not bool(torch.isfinite(entropy).all()):
        check_finite_logits(logits)
    return dist, top, entropy


def distribution(
    backend: LensBackend, logits: torch.Tensor, k: int, *, original: bool = False
) -> tuple[float, list[list[Any]]]:
    """Entropy in bits and the top-``k`` pairs of one logits vector."""
    _, top, ent = softmax_stats(logits, k, original=original)
    return float(ent.item()), topk_pairs(backend, top.ids.tolist(), top.probs.tolist())


def probes(
    backend: LensBackend, cfg: LensConfig, probe_rows: Sequence[torch.Tensor], final: torch.Tensor
) -> dict[str, Any]:
    """The JSON's test prompts, temperature exploration and final prediction."""
    original = cfg.schema == SCHEMA_ORIGINAL
    tests = []
    for prompt, row in zip(cfg.test_prompts, probe_rows):
        ent, topk = distribution(backend, row, _TEST_TOP_K, original=original)
        tests.append({"type": "test_prompt", "prompt": prompt, "entropy": ent, "topk": topk})
    temps = []
    for temp in TEMPERATURES:
        ent, topk = distribution(backend, (final / temp).float(), _TEMP_TOP_K, original=original)
        temps.append(
            {"type": "temperature_exploration", "temperature": temp, "entropy": ent, "topk": topk}
        )
    ent, topk = distribution(backend, final, _FINAL_TOP_K, original=original)
    return {
        "test_prompts": tests,
        "temperature_exploration": temps,
        "final_prediction": {"type": "final_prediction", "entropy": ent, "topk": topk},
    }
