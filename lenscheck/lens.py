"""The pipeline: residuals -> the model's own norms -> unembedding -> records.

Batched over a whole suite: every prompt and every probe goes through the model in as few
padded forward passes as memory allows (the backend's ``run_batch``); the residuals of all
prompts are normalized together and unembedded in row chunks, entropy and top-k are
computed per chunk, and each distinct token id is decoded once. Each prompt's numbers are
those it has when run alone: every step works row by row.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import torch

from lenscheck._version import __version__
from lenscheck.collapse import (
    ENTROPY_COLLAPSE_BITS,
    collapse_flags,
    is_semantic_top1,
    summarize_collapse,
)
from lenscheck.config import LensConfig
from lenscheck.norms import (
    DECODE_NORMS,
    apply_norm_or_skip,
    decode_norm_modules,
    final_norm_module,
    norm_spec,
)
from lenscheck.numerics import (
    TopK,
    check_finite_logits,
    entropy_from_probs,
    kl_bits,
    topk_probs,
)
from lenscheck.prompts import TARGET_PREDICTION, TEMPERATURES, is_verbose_position
from lenscheck.suites import PromptCase, PromptSuite
from lenscheck.vocab import FINAL, NEXT_LN1, RAW, SCHEMA_ORIGINAL

if TYPE_CHECKING:
    from lenscheck.backends.base import Capture, LensBackend

__all__ = [
    "ABLATION_RULE",
    "NEXT_TOKEN",
    "LensResult",
    "LensStats",
    "NonFiniteResidualError",
    "first_rule_layer",
    "lens_logits",
    "lens_stats",
    "lens_stats_batch",
    "normalized_residuals",
    "onset_tolerance",
    "run_lens",
    "run_suite",
]

log = logging.getLogger(__name__)
NEXT_TOKEN = "⟨NEXT⟩"
_TEST_TOP_K, _TEMP_TOP_K, _FINAL_TOP_K, _PURE_TOP_K = 10, 15, 20, 5
#: Logits per unembedding chunk (8 Mi fp32 values = 32 MiB); the lens holds two buffers of
#: that size. Each chunk streams all of W_U once: fewer, larger chunks are a little faster
#: and cost peak memory.
_CHUNK_LOGITS = 1 << 23
# The vocabulary axis of every logits tensor here ([rows, V], [L+1, V], [T, V]).
_VOCAB = -1
ABLATION_RULE = (
    "onset_disagreement: L_semantic under next-ln1 and under final differ by more than "
    "max(2, ceil(num_layers / 10)) layers, or only one of them exists"
)


class NonFiniteResidualError(FloatingPointError):
    """A residual holds NaN or inf (in practice: fp16 overflow)."""


@dataclass
class LensResult:
    """Everything one prompt's lens run produced; ``json_data`` is what the JSON file holds."""

    json_data: dict[str, Any]
    records: list[dict[str, Any]]
    pure_records: list[dict[str, Any]]
    input_ids: list[int]
    entropies: torch.Tensor  # [L+1, T] bits
    top1_ids: torch.Tensor  # [L+1, T]
    residuals: list[torch.Tensor] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    case: PromptCase | None = None

    @property
    def diagnostics(self) -> dict[str, Any]:
        """The JSON's diagnostics block."""
        return self.json_data["diagnostics"]  # type: ignore[no-any-return,unused-ignore]


_OVERFLOW_FIX = (
    "fp16 overflow is the usual cause: rerun with --dtype bfloat16 or float32 "
    "(pytest: --lens-dtype)"
)


def _overflow(logits: torch.Tensor) -> torch.Tensor:
    """Where ``logits`` hold NaN or +inf; -inf is a legitimate mask (a banned id), not an
    overflow."""
    return torch.isnan(logits) | torch.isposinf(logits)


def _check_finite(capture: Capture, where: str, dtype: torch.dtype) -> None:
    """The residuals first (naming the first bad layer), then the model's own logits
    (``dtype``: the backend's compute dtype, which the logits came out of)."""
    for layer, resid in enumerate(capture.residuals):
        if not bool(torch.isfinite(resid).all()):
            kind = "NaN" if bool(torch.isnan(resid).any()) else "inf"
            raise NonFiniteResidualError(
                f"{where}residual at lens layer {layer} contains {kind} (dtype {resid.dtype}); "
                + _OVERFLOW_FIX
            )
    if bool(_overflow(capture.logits).any()):
        raise NonFiniteResidualError(
            f"{where}the model's own logits are not finite though every residual is (dtype "
            f"{dtype}): the overflow is in its final norm or "
            f"unembedding; {_OVERFLOW_FIX}"
        )


def _diagnose_nan_entropy(
    logits: torch.Tensor, start: int, width: int, point: str, dtype: torch.dtype
) -> NoReturn:
    """Raise for a chunk of lens logits (rows from ``start``) whose entropy came out NaN:
    name the layer that overflowed (a raw residual in half precision)."""
    overflow = _overflow(logits)
    if not bool(overflow.any()):
        check_finite_logits(logits)  # a row of only -inf: the general message
        # A NaN entropy takes a NaN or +inf logit or an all -inf row: one of them raised.
        raise AssertionError
    row = int(overflow.nonzero()[0, 0])
    raise NonFiniteResidualError(
        f"the lens logits of layer {(start + row) // width} are not finite (decoding point "
        f"{point}, unembedding in {dtype}): the residual overflows it; rerun with "
        "--fp32-unembed, or --dtype bfloat16 or float32 (pytest: --lens-dtype)"
    )


def normalized_residuals(
    backend: LensBackend, residuals: list[torch.Tensor], point: str = NEXT_LN1
) -> torch.Tensor:
    """Each layer's residual through the norm of decoding ``point``: [L+1, T, d]."""
    norms = decode_norm_modules(backend.stack, point)
    return torch.stack([apply_norm_or_skip(r, m) for r, m in zip(residuals, norms)])


def lens_logits(
    backend: LensBackend, residuals: list[torch.Tensor], point: str = NEXT_LN1
) -> torch.Tensor:
    """The lens' fp32 logits for every layer and position at once: [L+1, T, V]."""
    return backend.unembed(normalized_residuals(backend, residuals, point))


@dataclass
class LensStats:
    """Per layer and position: entropy, top-k; plus the rows later checks need."""

    entropy: torch.Tensor  # [L+1, T]
    top_ids: torch.Tensor  # [L+1, T, k]
    top_probs: torch.Tensor  # [L+1, T, k]
    last_layer: torch.Tensor  # [T, V] lens logits at the last layer
    next_token: torch.Tensor  # [L+1, V] lens logits at the last position


def lens_stats(
    backend: LensBackend, residuals: list[torch.Tensor], k: int, point: str = NEXT_LN1
) -> LensStats:
    """:func:`lens_stats_batch` for one prompt."""
    return lens_stats_batch(backend, [residuals], k, point)[0]


def _fp32_buffers(rows: torch.Tensor, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    """Uninitialized fp32 tensors of ``shapes`` on the device of ``rows``."""
    return [torch.empty(shape, dtype=torch.float32, device=rows.device) for shape in shapes]


def lens_stats_batch(
    backend: LensBackend, prompts: Sequence[list[torch.Tensor]], k: int, point: str = NEXT_LN1
) -> list[LensStats]:
    """Unembed every (layer, position) of every prompt in row chunks, reduce each chunk.

    Rows are layer-major over the prompts' positions laid end to end; chunking bounds the
    peak memory to a few [rows, V] fp32 buffers at the same arithmetic cost.
    """
    lengths = [p[0].shape[0] for p in prompts]
    normed = torch.cat([normalized_residuals(backend, p, point) for p in prompts], dim=1)
    n_layers, width = normed.shape[0], normed.shape[1]
    rows = normed.reshape(n_layers * width, normed.shape[-1])
    ends = torch.tensor(lengths).cumsum(0) - 1  # last position of each prompt
    chunk = max(1, _CHUNK_LOGITS // backend.facts.d_vocab)
    # Every [rows, V] buffer is made once and filled in place. Fresh buffers per chunk,
    # with the small copies made between them, fragmented the heap: the allocator grew it
    # by a buffer per chunk instead of reusing the freed ones (+190 MiB peak RSS on the
    # embedded model, varying from run to run).
    vocab, most = backend.facts.d_vocab, min(chunk, rows.shape[0])
    scratch, dist_scratch, next_token, last_layer = _fp32_buffers(
        rows, (most, vocab), (most, vocab), (len(lengths), n_layers, vocab), (width, vocab)
    )
    wanted = [
        (p, layer, layer * width + int(end))
        for p, end in enumerate(ends)
        for layer in range(n_layers)
    ]
    top_row = (n_layers - 1) * width  # the first row of the last layer
    ent, ids, probs = [], [], []
    for start in range(0, rows.shape[0], chunk):
        part = rows[start : start + chunk]
        buf, dist = scratch[: part.shape[0]], dist_scratch[: part.shape[0]]
        logits = backend.unembed(part, out=buf)
        torch.softmax(logits.float(), dim=_VOCAB, out=dist)
        top = topk_probs(logits, k, probs=dist)
        ids.append(top.ids)
        probs.append(top.probs)
        stop = start + part.shape[0]
        for p, layer, row in wanted:
            if start <= row < stop:
                next_token[p, layer].copy_(logits[row - start])
        # The chunk's rows of the last layer (none before it: both slices are then empty).
        last_layer[max(start - top_row, 0) : max(stop - top_row, 0)].copy_(
            logits[max(top_row - start, 0) :]
        )
        del logits  # buf becomes the entropy's scratch
        ent.append(entropy_from_probs(dist, work=buf))
        # A row holding NaN or +inf, or only -inf, has a NaN softmax and so a NaN entropy;
        # masked (-inf) ids alone do not. Checking the [rows] entropies instead of the
        # [rows, V] logits saves five passes over the logits; the diagnosis, on failure
        # only, unembeds the chunk again.
        if not bool(torch.isfinite(ent[-1]).all()):
            _diagnose_nan_entropy(backend.unembed(part), start, width, point, backend.unembed.dtype)
    entropy = torch.cat(ent).reshape(n_layers, width)
    top_ids = torch.cat(ids).reshape(n_layers, width, -1)
    top_probs = torch.cat(probs).reshape(n_layers, width, -1)
    out, offset = [], 0
    for p, n in enumerate(lengths):
        cols = slice(offset, offset + n)
        out.append(
            LensStats(
                entropy=entropy[:, cols],
                top_ids=top_ids[:, cols],
                top_probs=top_probs[:, cols],
                last_layer=last_layer[cols],
                next_token=next_token[p],
            )
        )
        offset += n
    return out


def _topk_pairs(backend: LensBackend, ids: list[int], probs: list[float]) -> list[list[Any]]:
    return [[backend.decode(i), p] for i, p in zip(ids, probs)]


def _softmax_stats(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, TopK, torch.Tensor]:
    """The softmax of ``logits`` (checked as ``entropy_bits`` checks them), its top-``k`` and
    its entropy in bits: one softmax for all three, the same values as computing each alone."""
    check_finite_logits(logits)
    dist = torch.softmax(logits.float(), dim=_VOCAB)
    return dist, topk_probs(logits, k, probs=dist), entropy_from_probs(dist)


def _distribution(
    backend: LensBackend, logits: torch.Tensor, k: int
) -> tuple[float, list[list[Any]]]:
    _, top, ent = _softmax_stats(logits, k)
    return float(ent.item()), _topk_pairs(backend, top.ids.tolist(), top.probs.tolist())


def _records(
    backend: LensBackend,
    cfg: LensConfig,
    ids: list[int],
    ent: torch.Tensor,
    top_ids: list[list[list[int]]],
    top_p: list[list[list[float]]],
) -> list[dict[str, Any]]:
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
                    "topk": _topk_pairs(backend, layer_ids[pos][:k], layer_p[pos][:k]),
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


def _pure_records(
    backend: LensBackend,
    cfg: LensConfig,
    prompt_ids: set[int],
    ent: torch.Tensor,
    top_ids: list[list[list[int]]],
    top_p: list[list[list[float]]],
) -> list[dict[str, Any]]:
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
                "topk": _topk_pairs(backend, ids[:_PURE_TOP_K], probs[:_PURE_TOP_K]),
                **(flags if layer >= start else dict.fromkeys(flags, False)),
            }
        )
    return out


def _embedding_echo(
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


def _consistency(lens_last: torch.Tensor, model_logits: torch.Tensor) -> dict[str, Any]:
    kl = kl_bits(model_logits, lens_last)
    agree = bool((lens_last.argmax(_VOCAB) == model_logits.argmax(_VOCAB)).all())
    return {"kl_bits_last_pos": float(kl[-1]), "kl_bits_max": float(kl.max()), "top1_agree": agree}


def _norm_names(backend: LensBackend) -> tuple[str | None, str | None]:
    def name(module: Any) -> str | None:
        return None if module is None else norm_spec(module).class_name

    first = backend.stack.blocks[0].ln1 if backend.stack.blocks else None
    return name(first), name(backend.stack.ln_final)


def _norm_labels(backend: LensBackend, point: str) -> tuple[str, str]:
    """``norm_alignment_fix`` and ``layer0_norm_fix``: which norms the lens applied at
    ``point`` (the original's strings at next-ln1, where they were written)."""
    if point == RAW:
        return "none_raw_lens", "none_raw_lens"
    if point == FINAL:
        return "using_final_norm_at_every_layer", "using_final_norm_on_embeddings"
    ln2 = backend.stack.blocks[0].ln2 if backend.stack.blocks else None
    ln2_kind = norm_spec(ln2).kind if ln2 is not None else None
    alignment = (
        "fallback_to_ln1"
        if ln2_kind is None
        else f"using_ln2_{'layernorm' if ln2_kind == 'layernorm' else 'rmsnorm'}_for_post_block"
    )
    return alignment, "using_real_ln1_on_embeddings"


def _diagnostics(backend: LensBackend, cfg: LensConfig) -> dict[str, Any]:
    first, final = _norm_names(backend)
    kind0 = norm_spec(backend.stack.blocks[0].ln1).kind if first else None
    alignment, layer0 = _norm_labels(backend, cfg.decode_norm)
    return {
        "type": "diagnostics",
        "model": backend.model_id,
        "device": backend.device,
        "use_norm_lens": cfg.decode_norm != RAW,
        "use_fp32_unembed": str(backend.dtype) == "torch.float32",
        "unembed_dtype": str(backend.unembed.dtype),
        "first_block_ln1_type": first,
        "final_ln_type": final,
        "layernorm_bias_fix": "active" if kind0 == "layernorm" else "not_needed_rms_model",
        "norm_alignment_fix": alignment,
        "layer0_norm_fix": layer0,
        "mixed_precision_fix": "casting_to_fp32_before_unembed",
        "layer0_position_info": (
            "additive_pos_embed_included"
            if backend.facts.has_pos_embed
            else "token_only_rotary_model"
        ),
        "context_prompt": cfg.prompt,
        "target_prediction": TARGET_PREDICTION,
    }


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


@dataclass
class _Job:
    """One prompt of a suite on its way through the pipeline."""

    case: PromptCase
    cfg: LensConfig
    ids: list[int]
    probe_ids: list[list[int]]
    answer: dict[str, Any]


def _jobs(backend: LensBackend, cfg: LensConfig, suite: PromptSuite) -> list[_Job]:
    jobs = []
    for case in suite.cases:
        where = suite.where(case)
        ids = backend.encode(case.prompt)
        probe_ids = [backend.encode(p) for p in case.probes]
        _check_lengths(backend, where, "prompt", ids)
        for text, seq in zip(case.probes, probe_ids):
            _check_lengths(backend, where, f"probe {text!r}", seq)
        job_cfg = cfg.for_case(case.prompt, case.answer, case.probes)
        jobs.append(_Job(case, job_cfg, ids, probe_ids, _answer_facts(backend, case.answer)))
    return jobs


def _point_logits(
    backend: LensBackend, mains: Sequence[Capture], points: Sequence[str]
) -> dict[str, list[torch.Tensor]]:
    """Per decoding point and prompt, lens logits [L+1, V] at the prompt's last position.

    One unembedding for every point: each call streams all of W_U for a few dozen rows.
    """
    rows = []
    for point in points:
        norms = decode_norm_modules(backend.stack, point)
        for c in mains:
            rows += [apply_norm_or_skip(r[-1:], m) for r, m in zip(c.residuals, norms)]
    if not rows:
        return {}
    # In float32: these are a few rows, and a raw residual overflows half precision's range.
    logits = backend.unembed(torch.cat(rows), fp32=True)
    per_prompt = iter(logits.split(len(mains[0].residuals)))  # point-major, as the rows
    return {point: [next(per_prompt) for _ in mains] for point in points}


def onset_tolerance(num_layers: int) -> int:
    """Layers by which the two normed decoding points' L_semantic may differ (ABLATION_RULE)."""
    return max(2, math.ceil(num_layers / 10))


def _ablation(
    backend: LensBackend, job: _Job, by_point: dict[str, torch.Tensor]
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """The decoding-point block of the diagnostics, and p(answer) per layer per point."""
    pieces = job.answer["ground_truth_token_ids"]
    block: dict[str, Any] = {"chosen": job.cfg.decode_norm, "rule": ABLATION_RULE}
    p_answer: dict[str, list[float]] = {}
    for point in DECODE_NORMS:
        logits = by_point[point]
        dist, top, entropy = _softmax_stats(logits, 2)
        p_top1, p_top2 = top.probs.T.tolist()
        top1 = [backend.decode(i) for i in top.ids.T[0].tolist()]
        start = first_rule_layer(job.cfg)
        onset = next(
            (n for n, t in enumerate(top1) if n >= start and is_semantic_top1(t, job.case.answer)),
            None,
        )
        if pieces:
            target = logits[:, pieces[0] : pieces[0] + 1]
            rank: list[int | None] = ((logits > target).sum(_VOCAB) + 1).tolist()
            p_answer[point] = dist[:, pieces[0]].tolist()
        else:
            rank = [None] * logits.shape[0]
            p_answer[point] = [0.0] * logits.shape[0]
        block[point] = {
            "L_semantic": onset,
            "top1": top1,
            "p_top1": p_top1,
            "p_top2": p_top2,
            "entropy": entropy.tolist(),
            "p_answer": p_answer[point],
            "answer_rank": rank,
        }
    a, b = block[NEXT_LN1]["L_semantic"], block[FINAL]["L_semantic"]
    limit = onset_tolerance(backend.facts.num_layers)
    block["onset_disagreement"] = (a is None) != (b is None) or (
        a is not None and b is not None and abs(a - b) > limit
    )
    return block, p_answer


def _probes(
    backend: LensBackend, job: _Job, probe_rows: Sequence[torch.Tensor], final: torch.Tensor
) -> dict[str, Any]:
    tests = []
    for prompt, row in zip(job.cfg.test_prompts, probe_rows):
        ent, topk = _distribution(backend, row, _TEST_TOP_K)
        tests.append({"type": "test_prompt", "prompt": prompt, "entropy": ent, "topk": topk})
    temps = []
    for temp in TEMPERATURES:
        ent, topk = _distribution(backend, (final / temp).float(), _TEMP_TOP_K)
        temps.append(
            {"type": "temperature_exploration", "temperature": temp, "entropy": ent, "topk": topk}
        )
    ent, topk = _distribution(backend, final, _FINAL_TOP_K)
    return {
        "test_prompts": tests,
        "temperature_exploration": temps,
        "final_prediction": {"type": "final_prediction", "entropy": ent, "topk": topk},
    }


def run_lens(backend: LensBackend, cfg: LensConfig) -> LensResult:
    """Run the logit lens on ``cfg.prompt`` (its answer and probes) and build every record."""
    suite = cfg.evolve(suite=None).prompt_suite()
    return run_suite(backend, suite, cfg)[suite.cases[0].id]


def run_suite(backend: LensBackend, suite: PromptSuite, cfg: LensConfig) -> dict[str, LensResult]:
    """Run the lens on every prompt of ``suite`` through ``backend``; results by prompt id."""
    with torch.no_grad():
        return _run_suite(backend, suite, cfg)


def _tokenize_as(backend: LensBackend, cfg: LensConfig) -> None:
    """The backend tokenizes as ``cfg`` says (BOS policy, chat template): what the JSON
    records is then what the ids are."""
    codec = backend.codec
    if (codec.bos, codec.chat_template) != (cfg.bos, cfg.chat_template):
        backend.tokenize_with(cfg.bos, cfg.chat_template)


def _run_suite(backend: LensBackend, suite: PromptSuite, cfg: LensConfig) -> dict[str, LensResult]:
    _tokenize_as(backend, cfg)
    jobs = _jobs(backend, cfg, suite)
    captures = backend.run_batch([j.ids for j in jobs] + [p for j in jobs for p in j.probe_ids])
    if len(captures) != len(jobs) + sum(len(j.probe_ids) for j in jobs):
        raise RuntimeError(
            f"backend {backend.name!r} returned {len(captures)} captures for "
            f"{len(jobs)} prompts and their probes; expected one per sequence"
        )
    mains, probes = captures[: len(jobs)], iter(captures[len(jobs) :])
    probe_rows = [[next(probes).logits[-1] for _ in job.probe_ids] for job in jobs]
    for job, capture, rows in zip(jobs, mains, probe_rows):
        _check_finite(capture, suite.where(job.case), backend.dtype)
        for text, row in zip(job.cfg.test_prompts, rows):
            if bool(_overflow(row).any()):
                raise NonFiniteResidualError(
                    f"{suite.where(job.case)}probe {text!r}: the model's own logits are not "
                    f"finite (dtype {backend.dtype}); {_OVERFLOW_FIX}"
                )
    stats = lens_stats_batch(
        backend, [c.residuals for c in mains], cfg.top_k_verbose, cfg.decode_norm
    )
    by_point: dict[str, list[torch.Tensor]] = {cfg.decode_norm: [s.next_token for s in stats]}
    by_point.update(_point_logits(backend, mains, [p for p in DECODE_NORMS if p not in by_point]))
    results = {}
    for n, (job, capture, st, rows) in enumerate(zip(jobs, mains, stats, probe_rows)):
        points = {point: logits[n] for point, logits in by_point.items()}
        results[job.case.id] = _result(backend, job, capture, st, rows, points)
    return results


def _final_point_last_layer(
    backend: LensBackend, job: _Job, capture: Capture, st: LensStats
) -> Any:
    """Lens logits [T, V] at the last layer through the norm before the unembedding.

    next-ln1 and final already decode the last layer that way; raw does not, and the
    last-layer consistency check is about the lens machinery, not the decoding point.
    """
    if job.cfg.decode_norm != RAW:
        return st.last_layer
    return backend.unembed(
        apply_norm_or_skip(capture.residuals[-1], final_norm_module(backend.stack))
    )


def _result(
    backend: LensBackend,
    job: _Job,
    capture: Capture,
    st: LensStats,
    probe_rows: Sequence[torch.Tensor],
    by_point: dict[str, torch.Tensor],
) -> LensResult:
    cfg, ids = job.cfg, job.ids
    top_ids, top_p = st.top_ids.tolist(), st.top_probs.tolist()
    records = _records(backend, cfg, ids, st.entropy, top_ids, top_p)
    prompt_ids = set(backend.prompt_ids(cfg.prompt))
    pure = _pure_records(backend, cfg, prompt_ids, st.entropy, top_ids, top_p)
    lens_last = _final_point_last_layer(backend, job, capture, st)
    ablation, p_answer = _ablation(backend, job, by_point)
    diag = _diagnostics(backend, cfg)
    diag.update(summarize_collapse(pure))
    if cfg.schema != SCHEMA_ORIGINAL:
        diag["embedding_echo"] = _embedding_echo(backend, cfg, prompt_ids, st)
    diag.update(_extra_diagnostics(backend, cfg, ids, job.answer, lens_last, capture.logits))
    diag["decoding_ablation"] = ablation
    probes = _probes(backend, job, probe_rows, capture.logits[-1])
    json_data = {
        "prompt": {
            "type": "prompt",
            "context_prompt": cfg.prompt,
            "ground_truth": cfg.ground_truth,
        },
        "test_prompts": probes["test_prompts"],
        "temperature_exploration": probes["temperature_exploration"],
        "diagnostics": diag,
        "final_prediction": probes["final_prediction"],
        "model_stats": {
            "type": "model_stats",
            "num_layers": backend.facts.num_layers,
            "d_model": backend.facts.d_model,
            "n_heads": backend.facts.n_heads,
            "d_vocab": backend.facts.d_vocab,
            "n_ctx": backend.facts.n_ctx,
            "architecture": backend.facts.architecture,
        },
    }
    return LensResult(
        json_data=json_data,
        records=records,
        pure_records=pure,
        input_ids=ids,
        entropies=st.entropy,
        top1_ids=st.top_ids[..., 0],
        residuals=capture.residuals if cfg.keep_residuals else None,
        extras={
            "lens_logits_last": lens_last,
            "model_logits": capture.logits,
            "p_answer": p_answer,
        },
        case=job.case,
    )


def _extra_diagnostics(
    backend: LensBackend,
    cfg: LensConfig,
    ids: list[int],
    answer: dict[str, Any],
    lens_last: torch.Tensor,
    model_logits: torch.Tensor,
) -> dict[str, Any]:
    return {
        "last_layer_consistency": _consistency(lens_last, model_logits),
        "backend": backend.name,
        "model_source": cfg.model_source,
        "versions": {"lenscheck": __version__, **backend.versions()},
        "compute_dtype": str(backend.dtype),
        "architecture": backend.facts.architecture,
        "model_class": backend.facts.model_class,
        "tokenization": _tokenization(backend, cfg, ids),
        "copy_threshold": cfg.copy_threshold,
        "copy_margin": cfg.copy_margin,
        **answer,
        "decode_norm": cfg.decode_norm,
        **({} if cfg.schema == SCHEMA_ORIGINAL else _settings(cfg)),
    }


def _tokenization(backend: LensBackend, cfg: LensConfig, ids: list[int]) -> dict[str, Any]:
    bos = backend.bos_token_id
    facts: dict[str, Any] = {
        "prepend_bos": bos is not None and ids[:1] == [bos],
        "n_tokens": len(ids),
        "input_ids": ids,
    }
    if cfg.schema != SCHEMA_ORIGINAL:
        facts.update(
            bos_policy=cfg.bos,
            tokenizer_adds_bos=backend.codec.adds_bos,
            chat_template=cfg.chat_template,
        )
    return facts


def _settings(cfg: LensConfig) -> dict[str, Any]:
    """The run's conventions (extended schema): what a golden of another preset differs in."""
    return {
        "preset": cfg.preset,
        "bos": cfg.bos,
        "schema": cfg.schema,
        "chat_template": cfg.chat_template,
        "collapse_from_layer": first_rule_layer(cfg),
    }
