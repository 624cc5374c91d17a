"""The model's own next-token distributions: probe prompts, temperatures, final prediction.

These read the model's logits, not a lens: every lens of a run reports the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lenscheck.lens.records import topk_pairs
from lenscheck.numerics import TopK, check_finite_logits, entropy_from_probs, topk_probs
from lenscheck.prompts import TEMPERATURES

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import LensBackend
    from lenscheck.config import LensConfig

__all__ = ["distribution", "probes", "softmax_stats"]

_TEST_TOP_K, _TEMP_TOP_K, _FINAL_TOP_K = 10, 15, 20


def softmax_stats(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, TopK, torch.Tensor]:
    """The softmax of ``logits`` (checked as ``entropy_bits`` checks them), its top-``k`` and
    its entropy in bits: one softmax for all three, the same values as computing each alone."""
    import torch

    check_finite_logits(logits)
    dist = torch.softmax(logits.float(), dim=-1)
    return dist, topk_probs(logits, k, probs=dist), entropy_from_probs(dist)


def distribution(
    backend: LensBackend, logits: torch.Tensor, k: int
) -> tuple[float, list[list[Any]]]:
    """Entropy in bits and the top-``k`` pairs of one logits vector."""
    _, top, ent = softmax_stats(logits, k)
    return float(ent.item()), topk_pairs(backend, top.ids.tolist(), top.probs.tolist())


def probes(
    backend: LensBackend, cfg: LensConfig, probe_rows: Sequence[torch.Tensor], final: torch.Tensor
) -> dict[str, Any]:
    """The JSON's test prompts, temperature exploration and final prediction."""
    tests = []
    for prompt, row in zip(cfg.test_prompts, probe_rows):
        ent, topk = distribution(backend, row, _TEST_TOP_K)
        tests.append({"type": "test_prompt", "prompt": prompt, "entropy": ent, "topk": topk})
    temps = []
    for temp in TEMPERATURES:
        ent, topk = distribution(backend, (final / temp).float(), _TEMP_TOP_K)
        temps.append(
            {"type": "temperature_exploration", "temperature": temp, "entropy": ent, "topk": topk}
        )
    ent, topk = distribution(backend, final, _FINAL_TOP_K)
    return {
        "test_prompts": tests,
        "temperature_exploration": temps,
        "final_prediction": {"type": "final_prediction", "entropy": ent, "topk": topk},
    }
