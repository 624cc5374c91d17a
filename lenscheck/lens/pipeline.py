"""The pipeline: residuals -> each lens -> records, for every prompt of a suite.

One prompt at a time, so that a prompt's files are byte-identical whether it runs alone or
inside any suite: its forward passes (the prompt and its probes, as a lone run batches them),
each lens' preparation and unembedding in row chunks (lenscheck.lens.stats) and the
decoding-point rows are computed from that prompt alone, once for all lenses. Batching
prompts together changed the matrix shapes, hence the kernels' blocking and the fp32
rounding (up to 2.4e-5 bits of entropy); the unembedding, which dominates the cost, streams
W_U per row chunk either way. The probes, temperatures, final prediction and decoding-point
ablation read the model and the logit lens, and are the same in every lens' result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from lenscheck.collapse import summarize_collapse
from lenscheck.config import LensConfig
from lenscheck.lens.ablation import PointStats, ablation, point_logits, point_rows, split_points
from lenscheck.lens.diagnostics import (
    base_diagnostics,
    extra_diagnostics,
    final_point_last_layer,
    model_stats,
)
from lenscheck.lens.extended import add_extended
from lenscheck.lens.jobs import Job, SuiteCapture, capture_suite, make_jobs
from lenscheck.lens.probes import probes
from lenscheck.lens.records import embedding_echo, pure_records, records
from lenscheck.lens.result import LensResult
from lenscheck.lens.stats import LensStats, Scratch, lens_stats
from lenscheck.lenses import Lens, LensSpecError, LogitLens, OpenedLens, open_lenses
from lenscheck.norms import DECODE_NORMS
from lenscheck.vocab import RAW, SCHEMA_ORIGINAL

if TYPE_CHECKING:
    from lenscheck.backends.base import Capture, LensBackend
    from lenscheck.suites import PromptSuite

__all__ = ["LensLike", "bind_lens_items", "run_lens", "run_lenses", "run_suite"]

#: What the run functions accept as a lens: a spec (``"tuned=PATH"``), a spec whose files
#: were read (:func:`lenscheck.lenses.open_lenses`), or a lens already bound to the backend.
LensLike = str | OpenedLens | Lens


def run_lens(backend: LensBackend, cfg: LensConfig, lens: LensLike | None = None) -> LensResult:
    """Run ``lens`` (default: the first of ``cfg.lenses``) on ``cfg.prompt`` (its answer and
    probes) and build every record."""
    suite = cfg.evolve(suite=None).prompt_suite()
    return run_suite(backend, suite, cfg, lens)[suite.cases[0].id]


def run_suite(
    backend: LensBackend, suite: PromptSuite, cfg: LensConfig, lens: LensLike | None = None
) -> dict[str, LensResult]:
    """Run one lens (default: the first of ``cfg.lenses``, the logit lens unless changed) on
    every prompt of ``suite`` through ``backend``; results by prompt id."""
    chosen = [lens] if lens is not None else list(cfg.lenses[:1])
    (results,) = run_lenses(backend, suite, cfg, chosen).values()
    return results


def run_lenses(
    backend: LensBackend,
    suite: PromptSuite,
    cfg: LensConfig,
    lenses: Sequence[LensLike] | None = None,
) -> dict[str, dict[str, LensResult]]:
    """Run every lens (default: ``cfg.lenses``) on every prompt of ``suite`` from the same
    forward passes; results by lens name (in the order given), then by prompt id."""
    with torch.no_grad():
        bound = bind_lens_items(list(cfg.lenses if lenses is None else lenses), backend, cfg)
        return _run_lenses(backend, suite, cfg, bound)


def bind_lens_items(items: Sequence[LensLike], backend: LensBackend, cfg: LensConfig) -> list[Lens]:
    """Each item as a lens bound to ``backend``; refuses two lenses of one name and a logit
    lens at another decoding point than ``cfg.decode_norm`` (the JSON records that one)."""
    specs = [item for item in items if isinstance(item, str)]
    opened = iter(open_lenses(specs)) if specs else iter(())
    bound: list[Lens] = []
    for item in items:
        if isinstance(item, str):
            item = next(opened)
        bound.append(item.bind(backend, cfg) if isinstance(item, OpenedLens) else item)
    names = [lens.name for lens in bound]
    if not bound or len(set(names)) != len(names):
        raise LensSpecError(f"a run reads one lens of each kind, at least one; got {names}")
    for lens in bound:
        if isinstance(lens, LogitLens) and lens.point != cfg.decode_norm:
            raise LensSpecError(
                f"a logit lens at {lens.point} in a run whose decode_norm is {cfg.decode_norm}: "
                f"run with cfg.evolve(decode_norm={lens.point!r})"
            )
    return bound


def _tokenize_as(backend: LensBackend, cfg: LensConfig) -> None:
    """The backend tokenizes as ``cfg`` says (BOS policy, chat template): what the JSON
    records is then what the ids are."""
    codec = backend.codec
    if (codec.bos, codec.chat_template) != (cfg.bos, cfg.chat_template):
        backend.tokenize_with(cfg.bos, cfg.chat_template)


def _run_lenses(
    backend: LensBackend, suite: PromptSuite, cfg: LensConfig, lenses: Sequence[Lens]
) -> dict[str, dict[str, LensResult]]:
    _tokenize_as(backend, cfg)
    jobs = make_jobs(backend, cfg, suite)
    batch = capture_suite(backend, suite, jobs)
    by_id = {job.case.id: job for job in jobs}
    out: dict[str, dict[str, LensResult]] = {lens.name: {} for lens in lenses}
    # Prompt by prompt, never across prompts (see the module docstring); one prompt's
    # decoding-point logits live in the scratch until the next prompt's overwrite them.
    scratch = Scratch()
    for n, job in enumerate(jobs):
        main = batch.mains[n]
        stats = [_stats(backend, cfg, main, lens, scratch) for lens in lenses]
        points = _ablation_logits(backend, cfg, main, lenses, stats, scratch)
        control = by_id[c] if (c := job.case.control_for) else None
        shared = _shared(backend, job, batch, n, points, _logit_lens_point(cfg, lenses, stats))
        for lens, st in zip(lenses, stats):
            out[lens.name][job.case.id] = _result(backend, lens, job, batch, n, st, shared, control)
    return out


class _Shared(NamedTuple):
    """One prompt's values that are the same through every lens: computed once."""

    points: dict[str, torch.Tensor]  # the decoding points' logits [L+1, V]
    block: dict[str, Any]  # the JSON's decoding_ablation
    p_answer: dict[str, list[float]]  # the ablation's answer probability per point
    probes: dict[str, Any]  # the JSON's test prompts, temperatures, final prediction


def _shared(
    backend: LensBackend,
    job: Job,
    batch: SuiteCapture,
    n: int,
    points: dict[str, torch.Tensor],
    known: dict[str, PointStats],
) -> _Shared:
    cfg = job.cfg
    block, p_answer = ablation(backend, cfg, job.case, job.answer, points, known)
    probe_block = probes(backend, cfg, batch.probe_rows[n], batch.mains[n].logits[-1])
    return _Shared(points, block, p_answer, probe_block)


def _stats(
    backend: LensBackend, cfg: LensConfig, capture: Capture, lens: Lens, scratch: Scratch
) -> LensStats:
    """The lens' statistics of one prompt; the run's logit lens, when it unembeds in fp32
    (as the decoding points' rows need), reads those rows in its own chunks too."""
    original = cfg.schema == SCHEMA_ORIGINAL
    tail = (
        point_rows(backend, [capture], _other_points(cfg))
        if _reads_points(backend, cfg, lens)
        else None
    )
    return lens_stats(
        backend,
        capture.residuals,
        cfg.top_k_verbose,
        lens=lens,
        original=original,
        scratch=scratch,
        tail=tail,
    )


def _other_points(cfg: LensConfig) -> list[str]:
    """The decoding points the run's logit lens does not read itself."""
    return [p for p in DECODE_NORMS if p != cfg.decode_norm]


def _reads_points(backend: LensBackend, cfg: LensConfig, lens: Lens) -> bool:
    """Whether ``lens`` is the run's logit lens and unembeds in fp32: its readout is then
    the decoding points' own (lenscheck.lens.ablation.point_logits), and their few dozen
    rows ride in its chunks instead of streaming all of W_U once more (the same bits: a
    row's logits do not depend on the chunk's length)."""
    return (
        isinstance(lens, LogitLens)
        and lens.point == cfg.decode_norm
        and backend.unembed.dtype == torch.float32
    )


def _logit_lens_point(
    cfg: LensConfig, lenses: Sequence[Lens], stats: Sequence[LensStats]
) -> dict[str, PointStats]:
    """The logit lens' statistics at the last position, by its decoding point, where the
    run reads the logit lens (the ablation then takes no softmax of its own there, and
    names the records' top-1 among tied logits: torch.topk breaks a tie by its k). Empty:
    no logit lens."""
    for lens, st in zip(lenses, stats):
        if isinstance(lens, LogitLens) and lens.point == cfg.decode_norm:
            # top_k_verbose >= 2 (LensConfig): the records hold the top two at the last position.
            top = st.top_probs[:, -1, :2]
            point = PointStats(st.next_token_probs, st.next_token_top1(), top, st.entropy[:, -1])
            return {cfg.decode_norm: point}
    return {}


def _ablation_logits(
    backend: LensBackend,
    cfg: LensConfig,
    main: Capture,
    lenses: Sequence[Lens],
    stats: Sequence[LensStats],
    scratch: Scratch,
) -> dict[str, torch.Tensor]:
    """Per decoding point, the prompt's logit-lens logits [L+1, V] at its last position:
    the logit lens' own rows where the run reads it, the few others unembedded apart."""
    by_point: dict[str, torch.Tensor] = {}
    rows = None
    for lens, st in zip(lenses, stats):
        if isinstance(lens, LogitLens) and lens.point == cfg.decode_norm:
            by_point[cfg.decode_norm] = st.next_token
            if st.tail is not None:
                rows = split_points(st.tail, 1, _other_points(cfg))
    others = [p for p in DECODE_NORMS if p not in by_point]
    if rows is None:
        rows = point_logits(backend, [main], others, scratch)
    by_point.update({point: rows[point][0] for point in others})
    return by_point


def _result(
    backend: LensBackend,
    lens: Lens,
    job: Job,
    batch: SuiteCapture,
    n: int,
    st: LensStats,
    shared: _Shared,
    control: Job | None = None,
) -> LensResult:
    cfg, ids, capture = job.cfg, job.ids, batch.mains[n]
    top_ids, top_p = st.top_ids.tolist(), st.top_probs.tolist()
    rows = records(backend, cfg, ids, st.entropy, top_ids, top_p)
    prompt_ids = set(backend.prompt_ids(cfg.prompt))
    pure = pure_records(backend, cfg, prompt_ids, st.entropy, top_ids, top_p)
    lens_last = final_point_last_layer(backend, lens, capture, st)
    diag = base_diagnostics(backend, cfg)
    diag.update(summarize_collapse(pure))
    if cfg.schema != SCHEMA_ORIGINAL:
        diag["embedding_echo"] = embedding_echo(backend, cfg, prompt_ids, st)
    diag.update(extra_diagnostics(backend, cfg, ids, job.answer, lens_last, capture.logits))
    diag["decoding_ablation"] = shared.block
    ext = None
    if cfg.schema != SCHEMA_ORIGINAL:
        logits = (st.next_token, shared.points[RAW])
        top1 = st.next_token_top1()
        ext = add_extended(backend, lens, cfg, capture, logits, pure, diag, control, top1)
    facts = lens.facts()
    if not isinstance(lens, LogitLens):
        diag["lens"] = facts  # the logit lens' facts are decode_norm, already there
    return LensResult(
        json_data=_json(backend, cfg, diag, shared.probes),
        records=rows,
        pure_records=pure,
        input_ids=ids,
        entropies=st.entropy,
        top1_ids=st.top_ids[..., 0],
        residuals=capture.residuals if cfg.keep_residuals else None,
        extras={
            "lens_logits_last": lens_last,
            "model_logits": capture.logits,
            "p_answer": shared.p_answer,
        },
        case=job.case,
        lens=lens.name,
        lens_facts=facts,
        extended=ext,
    )


def _json(
    backend: LensBackend, cfg: LensConfig, diag: dict[str, Any], probe_block: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document, its keys in the original's order."""
    return {
        "prompt": {
            "type": "prompt",
            "context_prompt": cfg.prompt,
            "ground_truth": cfg.ground_truth,
        },
        "test_prompts": probe_block["test_prompts"],
        "temperature_exploration": probe_block["temperature_exploration"],
        "diagnostics": diag,
        "final_prediction": probe_block["final_prediction"],
        "model_stats": model_stats(backend),
    }
