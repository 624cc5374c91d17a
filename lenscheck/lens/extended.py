"""The extended schema's next-token measurements of one prompt, wired to a run: which
tensors they read (lenscheck.metrics.nexttoken computes them) and where they go (the pure
rows' ``metrics``, the sidecars, the JSON's milestones and raw-vs-norm summary)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lenscheck.lens.records import first_rule_layer
from lenscheck.metrics.nexttoken import (
    NextTokenInputs,
    NextTokenMetrics,
    answer_first_id,
    next_token_metrics,
)

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import Capture, LensBackend
    from lenscheck.config import LensConfig
    from lenscheck.lens.jobs import Job
    from lenscheck.lenses.base import Lens

__all__ = ["add_extended"]


def _inputs(
    backend: LensBackend,
    lens: Lens,
    cfg: LensConfig,
    capture: Capture,
    lens_logits: torch.Tensor,
    raw_logits: torch.Tensor,
    answer_ids: list[int],
    control: Job | None,
    top1: list[int],
) -> NextTokenInputs:
    import torch

    last = [r[-1:] for r in capture.residuals]
    unembedded = torch.cat([lens.prepare_layer(n, r).float() for n, r in enumerate(last)])
    return NextTokenInputs(
        lens_logits=lens_logits.float(),
        raw_logits=raw_logits.float(),
        final_logits=capture.logits[-1].float(),
        residual=torch.cat(last).float(),
        unembedded=unembedded,
        bias=backend.unembed.bias,
        answer=answer_first_id(backend.prompt_ids, cfg.prompt, cfg.ground_truth, answer_ids),
        prompt_seq=list(backend.prompt_ids(cfg.prompt)),
        decode=backend.decode,
        copy_margin=cfg.copy_margin,
        start=first_rule_layer(cfg),
        control_answer=None if control is None else _answer_of(backend, control),
        is_control=control is not None,
        top1=top1,
    )


def _answer_of(backend: LensBackend, job: Job) -> int | None:
    """The controlled prompt's answer's first id, as its own run finds it."""
    fallback = list(job.answer.get("ground_truth_token_ids") or [])
    return answer_first_id(backend.prompt_ids, job.cfg.prompt, job.cfg.ground_truth, fallback)


def add_extended(
    backend: LensBackend,
    lens: Lens,
    cfg: LensConfig,
    capture: Capture,
    logits: tuple[torch.Tensor, torch.Tensor],
    pure: list[dict[str, Any]],
    diag: dict[str, Any],
    control: Job | None,
    top1: list[int],
) -> NextTokenMetrics:
    """Compute one prompt's extended measurements from its (lens, raw) next-token logits
    [L+1, V]; put the columns into ``pure``'s rows and the milestones and summary into
    ``diag``; return them (the sidecars are written from it). ``control``: the prompt this
    one is the control of (its margin column and ``diag["control_summary"]``). ``top1``:
    the lens' top-1 id per layer at the last position, as the pure CSV has it."""
    answer_ids = list(diag.get("ground_truth_token_ids") or [])
    x = _inputs(backend, lens, cfg, capture, logits[0], logits[1], answer_ids, control, top1)
    out = next_token_metrics(x)
    for row, cols in zip(pure, out.pure):
        row["metrics"] = cols
    diag["answer_first_id"] = x.answer
    diag["milestones"] = out.milestones
    diag["raw_lens_summary"] = out.raw_summary
    if control is not None and out.control_summary is not None:
        diag["control_summary"] = {"control_for": control.case.id, **out.control_summary}
    return out
