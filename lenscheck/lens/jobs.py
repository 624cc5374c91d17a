"""A suite's prompts on their way in: token ids checked against the context, the answer's
token facts, and the forward passes (prompts and probes together), checked for overflow."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lenscheck.lens.finite import (
    OVERFLOW_FIX,
    NonFiniteResidualError,
    check_capture_finite,
    overflow,
)

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import Capture, LensBackend
    from lenscheck.config import LensConfig
    from lenscheck.suites import PromptCase, PromptSuite

__all__ = ["Job", "SuiteCapture", "capture_suite", "make_jobs"]

# The package's one logger: users filter on "lenscheck.lens".
log = logging.getLogger("lenscheck.lens")


@dataclass
class Job:
    """One prompt of a suite on its way through the pipeline."""

    case: PromptCase
    cfg: LensConfig
    ids: list[int]
    probe_ids: list[list[int]]
    answer: dict[str, Any]


def _check_lengths(backend: LensBackend, where: str, what: str, ids: list[int]) -> None:
    n_ctx = backend.facts.n_ctx
    if n_ctx and len(ids) > n_ctx:
        raise ValueError(
            f"{where}{what} is {len(ids)} tokens long but {backend.model_id} has a context of "
            f"{n_ctx} tokens; shorten the prompt"
        )


def _answer_facts(backend: LensBackend, answer: str) -> dict[str, Any]:
    pieces = backend.prompt_ids(" " + answer.strip())
    if len(pieces) != 1:
        log.warning(
            "ground truth %r tokenizes to %d pieces; is_answer compares the top-1 text "
            "with the whole string",
            answer,
            len(pieces),
        )
    return {"ground_truth_token_ids": pieces, "ground_truth_single_token": len(pieces) == 1}


def make_jobs(backend: LensBackend, cfg: LensConfig, suite: PromptSuite) -> list[Job]:
    """Every prompt of ``suite`` tokenized and checked, with its own configuration."""
    jobs = []
    for case in suite.cases:
        where = suite.where(case)
        ids = backend.encode(case.prompt)
        probe_ids = [backend.encode(p) for p in case.probes]
        _check_lengths(backend, where, "prompt", ids)
        for text, seq in zip(case.probes, probe_ids):
            _check_lengths(backend, where, f"probe {text!r}", seq)
        job_cfg = cfg.for_case(case.prompt, case.answer, case.probes)
        jobs.append(Job(case, job_cfg, ids, probe_ids, _answer_facts(backend, case.answer)))
    return jobs


@dataclass
class SuiteCapture:
    """The forward passes of a suite: each prompt's capture, each probe's last logits."""

    mains: list[Capture]
    probe_rows: list[list[torch.Tensor]]  # per prompt, per probe: logits [V]


def capture_suite(backend: LensBackend, suite: PromptSuite, jobs: Sequence[Job]) -> SuiteCapture:
    """Run every prompt with its probes, one prompt at a time; refuse overflow.

    Each prompt's forward passes are those it has when run alone (its own sequences, batched
    and padded as a lone run batches them), so its numbers do not depend on the suite it
    is in: padding it beside other prompts changed the kernels' blocking, and with it the
    float rounding (entropies moved by up to 2.4e-5 bits between a prompt alone and inside
    a suite).
    """
    mains: list[Capture] = []
    probe_rows: list[list[torch.Tensor]] = []
    for job in jobs:
        main, rows = _capture_job(backend, suite, job)
        mains.append(main)
        probe_rows.append(rows)
    return SuiteCapture(mains, probe_rows)


def _capture_job(
    backend: LensBackend, suite: PromptSuite, job: Job
) -> tuple[Capture, list[torch.Tensor]]:
    """One prompt's capture and its probes' last logits, checked for overflow."""
    captures = backend.run_batch([job.ids, *job.probe_ids])
    if len(captures) != 1 + len(job.probe_ids):
        raise RuntimeError(
            f"backend {backend.name!r} returned {len(captures)} captures for a prompt and "
            f"its {len(job.probe_ids)} probes; expected one per sequence"
        )
    capture, rows = captures[0], [c.logits[-1] for c in captures[1:]]
    check_capture_finite(capture, suite.where(job.case), backend.dtype)
    for text, row in zip(job.cfg.test_prompts, rows):
        if bool(overflow(row).any()):
            raise NonFiniteResidualError(
                f"{suite.where(job.case)}probe {text!r}: the model's own logits are not "
                f"finite (dtype {backend.dtype}); {OVERFLOW_FIX}"
            )
    return capture, rows
