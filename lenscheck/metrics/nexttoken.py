"""The extended next-token measurements of one prompt through one lens, from tensors.

Inputs are the lens' logits at the last position for every layer, the raw lens' (the
same unembedding of the un-normalized residual), the model's own final logits, and the
residual and what the lens unembeds at the last position. Each distribution's
log-softmax and its exp are taken once here and every statistic of
lenscheck.metrics.functions reads them: three [L+1, V]-or-smaller softmaxes per prompt,
against the (L+1) x T of the lens' own pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from lenscheck.metrics import functions as f
from lenscheck.metrics.table import COPY_SOFT_KS, COPY_SOFT_TAU, COPY_STRICT_TAUS, JACCARD_K
from lenscheck.numerics import top_k

if TYPE_CHECKING:
    import torch

__all__ = ["NextTokenInputs", "NextTokenMetrics", "answer_first_id", "next_token_metrics"]

_JR = f"topk_jaccard_raw_norm@{JACCARD_K}"
_JC = f"topk_jaccard_consecutive@{JACCARD_K}"


def answer_first_id(
    prompt_ids: Callable[[str], list[int]], prompt: str, answer: str, fallback: list[int]
) -> int | None:
    """The answer's first token id: the first id of ``prompt + " " + answer`` beyond the
    prompt's ids (the no-space variant only when the spaced one does not extend the
    prompt); else the first of ``fallback`` (the answer tokenized alone), else None."""
    base = prompt_ids(prompt)
    for text in (f"{prompt} {answer.strip()}", f"{prompt}{answer.strip()}"):
        ids = prompt_ids(text)
        if len(ids) > len(base) and ids[: len(base)] == base:
            return ids[len(base)]
    return fallback[0] if fallback else None


@dataclass
class NextTokenInputs:
    """One prompt's tensors at the last position, every layer (fp32)."""

    lens_logits: torch.Tensor  # [L+1, V]
    raw_logits: torch.Tensor  # [L+1, V]
    final_logits: torch.Tensor  # [V], the model's own
    residual: torch.Tensor  # [L+1, d], before any norm
    unembedded: torch.Tensor  # [L+1, d'], what the lens hands the unembedding
    bias: torch.Tensor | None  # [V], the unembedding's bias
    answer: int | None
    prompt_seq: list[int]  # the prompt's ids in order, no special tokens
    decode: Callable[[int], str]
    copy_margin: float
    start: int  # the first layer the copy rules apply to
    #: A control prompt: the controlled prompt's answer's first id (else None), and whether
    #: this prompt is a control at all (its margin may still be unknown: no answer id).
    control_answer: int | None = None
    is_control: bool = False
    #: The lens' top-1 id per layer as the records chose it. torch.topk breaks a tie by
    #: its k (k = 1, 2, 20 and max pick different ids among equal logits), so every file
    #: takes the one choice; None: chosen here, as the ablation chooses (top-2 of the logits).
    top1: list[int] | None = None


@dataclass
class NextTokenMetrics:
    """The pure CSV's extra columns per layer, the rawlens rows, milestones, summary."""

    pure: list[dict[str, Any]] = field(default_factory=list)
    rawlens: list[dict[str, Any]] = field(default_factory=list)
    milestones: dict[str, int | None] = field(default_factory=dict)
    raw_summary: dict[str, Any] = field(default_factory=dict)
    #: A control prompt's summary of its control_margin column (None: not a control).
    control_summary: dict[str, Any] | None = None


class _Dist(NamedTuple):
    """One distribution's log-softmax and its exp, each taken once for every statistic."""

    logp: torch.Tensor
    p: torch.Tensor

    @classmethod
    def of(cls, logits: torch.Tensor) -> _Dist:
        import torch

        logp = torch.log_softmax(logits.float(), dim=-1)
        return cls(logp, logp.exp())


def _floats(t: torch.Tensor) -> list[float]:
    return [float(x) for x in t.tolist()]


def _answer_cols(logp: torch.Tensor, logits: torch.Tensor, a: int | None) -> dict[str, list[Any]]:
    n = logits.shape[0]
    if a is None:
        return {"p": [None] * n, "rank": [None] * n}
    return {"p": _floats(f.p_of(logp, a)), "rank": [int(r) for r in f.answer_rank(logits, a)]}


def _gaps(logits: torch.Tensor, a: int | None, ranks: list[Any]) -> tuple[list[Any], list[Any]]:
    n = logits.shape[0]
    if a is None:
        return [None] * n, [None] * n
    second = _floats(f.logit_gap_to_second(logits))
    to_top = _floats(f.logit_gap_to_top1(logits, a))
    top1 = [r == 1 for r in ranks]
    return (
        [g if t else None for g, t in zip(second, top1)],
        [None if t else g for g, t in zip(to_top, top1)],
    )


def _copy_flags(
    x: NextTokenInputs, top1: list[int], p1: list[float], p2: list[float]
) -> dict[str, list[bool]]:
    prompt = set(x.prompt_seq)
    texts = [x.decode(t) for t in top1]
    out: dict[str, list[bool]] = {}
    for tau in COPY_STRICT_TAUS:
        out[f"copy_strict@{tau}"] = [
            n >= x.start and f.copy_strict(t, a, b, prompt, s, tau, x.copy_margin)
            for n, (t, a, b, s) in enumerate(zip(top1, p1, p2, texts))
        ]
    for k in COPY_SOFT_KS:
        out[f"copy_soft_k{k}@{COPY_SOFT_TAU}"] = [
            n - k + 1 >= x.start
            and f.copy_soft(top1[n - k + 1 : n + 1], p1[n], x.prompt_seq, COPY_SOFT_TAU)
            for n in range(len(top1))
        ]
    return out


def _pure(
    x: NextTokenInputs,
    lp: _Dist,
    lq: _Dist,
    sets: list[set[int]],
    raw_sets: list[set[int]],
    top1: list[int],
) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
    """The pure CSV's extra columns, and the columns the milestones read (``top1``: the
    lens' top-1 id per layer)."""

    logits = x.lens_logits
    n = logits.shape[0]
    logp = lp.logp
    p1 = _p_of_ids(logp, top1)
    p2 = _floats(top_k(logp, 2)[0][:, 1].exp())  # p1 itself in a tie
    ans = _answer_cols(logp, logits, x.answer)
    gap2, gap1 = _gaps(logits, x.answer, ans["rank"])
    teacher = f.entropy_bits_of(lq.logp[None], lq.p[None])[0].item()
    cols: dict[str, list[Any]] = {
        "entropy_bits": _floats(f.entropy_bits_of(*lp)),
        "p_top1": p1,
        "p_top5": _floats(f.p_topk(logp, 5)),
        "p_answer": ans["p"],
        "answer_rank": ans["rank"],
        "kl_to_final_bits": _floats(f.kl_bits_of(logp, lq.logp.expand_as(logp), lp.p)),
        "teacher_entropy_bits": [float(teacher)] * n,
        "cos_to_final": _floats(f.cosine(*_unbiased(x, logits, x.final_logits))),
        "answer_logit_gap": gap2,
        "answer_vs_top1_gap": gap1,
        "resid_norm_ratio": _floats(
            x.unembedded.double().norm(dim=-1) / x.residual.double().norm(dim=-1).clamp_min(1e-30)
        ),
        "delta_resid_cos": _floats(f.cosine(x.residual, x.unembedded)),
        _JR: [f.topk_jaccard(a, b) for a, b in zip(sets, raw_sets)],
        _JC: [None] + [f.topk_jaccard(sets[i - 1], sets[i]) for i in range(1, n)],
        **_copy_flags(x, top1, p1, p2),
    }
    if x.is_control:
        # Only a control prompt's file has the column: every other prompt's files stay
        # what they were, whichever suite they run in.
        cols["control_margin"] = _margins(x, lp)
    rows = [{k: v[i] for k, v in cols.items()} for i in range(n)]
    return rows, cols


def _unbiased(x: NextTokenInputs, *logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``logits`` less the unembedding's bias (the logits themselves without one)."""
    if x.bias is None:
        return logits
    bias = x.bias.float()
    return tuple(z - bias for z in logits)


def _margins(x: NextTokenInputs, lp: _Dist) -> list[Any]:
    """A control prompt's margin per layer (empty where an answer has no id)."""
    n = lp.p.shape[0]
    if x.answer is None or x.control_answer is None:
        return [None] * n
    return _floats(f.control_margin(lp.logp, x.answer, x.control_answer, lp.p))


def _top1_ids(logits: torch.Tensor, given: list[int] | None) -> list[int]:
    """``given``, else each row's top-1 by the top-2 of its logits (the ablation's choice,
    through the same lenscheck.numerics.top_k)."""
    if given is not None:
        return list(given)
    return [int(i) for i in top_k(logits, 2)[1][:, 0].tolist()]


def _p_of_ids(logp: torch.Tensor, ids: list[int]) -> list[float]:
    """Each row's probability of its own id in ``ids``."""
    import torch

    return _floats(logp.gather(-1, torch.tensor(ids)[:, None])[:, 0].exp())


def _side(
    side: str,
    p_top1: list[float],
    ids: list[int],
    decode: Callable[[int], str],
    ans: dict[str, list[Any]],
) -> dict[str, list[Any]]:
    """One lens' five columns of the rawlens sidecar (``ans``: its p and rank columns)."""
    return {
        f"p_top1_{side}": p_top1,
        f"top1_token_id_{side}": ids,
        f"top1_token_str_{side}": [decode(i) for i in ids],
        f"p_answer_{side}": ans["p"],
        f"answer_rank_{side}": ans["rank"],
    }


def _rawlens(
    x: NextTokenInputs, lp: _Dist, lr: _Dist, pure: dict[str, list[Any]], top1: list[int]
) -> list[dict[str, Any]]:
    n = lp.p.shape[0]
    raw_ids = _top1_ids(x.raw_logits, None)  # chosen as the ablation chooses
    raw_ans = _answer_cols(lr.logp, x.raw_logits, x.answer)
    raw = _side("raw", _p_of_ids(lr.logp, raw_ids), raw_ids, x.decode, raw_ans)
    # The norm side is the pure CSV's own values: the two files cannot disagree.
    norm_ans = {"p": pure["p_answer"], "rank": pure["answer_rank"]}
    norm = _side("norm", pure["p_top1"], top1, x.decode, norm_ans)
    h_norm = pure["entropy_bits"]
    cols: dict[str, list[Any]] = {
        "layer": list(range(n)),
        **raw,
        **norm,
        "kl_norm_vs_raw_bits": _floats(f.kl_bits_of(lp.logp, lr.logp, lp.p)),
        "kl_raw_to_norm_bits": _floats(f.kl_bits_of(lr.logp, lp.logp, lr.p)),
        "js_divergence": _floats(f.js_divergence_bits(lp.logp, lr.logp, lp.p, lr.p)),
        "entropy_bits_norm": h_norm,
        "entropy_bits_raw": _floats(f.entropy_bits_of(*lr)),
        "entropy_gap_bits": [h - t for h, t in zip(h_norm, pure["teacher_entropy_bits"])],
        "l1_prob_diff": _floats(f.l1_prob_diff(lp.logp, lr.logp, lp.p, lr.p)),
        _JR: pure[_JR],
        _JC: pure[_JC],
        "norm_only_semantics": [
            a == 1 and b != 1 for a, b in zip(norm["answer_rank_norm"], raw["answer_rank_raw"])
        ],
    }
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


def _milestones(cols: dict[str, list[Any]], start: int) -> dict[str, int | None]:
    ranks, kl = cols["answer_rank"], cols["kl_to_final_bits"]
    out: dict[str, int | None] = {}
    for r in (1, 5, 10):
        out[f"first_rank_le_{r}"] = f.first_layer([x is not None and x <= r for x in ranks], start)
    for b in (1.0, 0.5):
        out[f"first_kl_below_{b}"] = f.first_layer([x < b for x in kl], start)
    for tau in COPY_STRICT_TAUS:
        out[f"L_copy_strict@{tau}"] = f.first_layer(cols[f"copy_strict@{tau}"], start)
    firsts = [
        (f.first_layer(cols[f"copy_soft_k{k}@{COPY_SOFT_TAU}"], start), k) for k in COPY_SOFT_KS
    ]
    hits = [(layer, k) for layer, k in firsts if layer is not None]
    layer, k = min(hits) if hits else (None, None)
    out["L_copy_soft"], out["L_copy_soft_k"] = layer, k
    return out


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    kl = [r["kl_norm_vs_raw_bits"] for r in rows]
    top = max(range(len(kl)), key=kl.__getitem__)
    only = [bool(r["norm_only_semantics"]) for r in rows]
    jr = [r[_JR] for r in rows]
    return {
        "max_kl_norm_vs_raw_bits": kl[top],
        "max_kl_norm_vs_raw_layer": top,
        "first_norm_only_semantics_layer": f.first_layer(only),
        "n_norm_only_semantics": sum(only),
        "mean_topk_jaccard_raw_norm": sum(jr) / len(jr),
    }


def next_token_metrics(x: NextTokenInputs) -> NextTokenMetrics:
    """Every extended next-token measurement of one prompt (lenscheck.metrics.table)."""
    lp, lr, lq = _Dist.of(x.lens_logits), _Dist.of(x.raw_logits), _Dist.of(x.final_logits)
    sets = f.topk_ids(x.lens_logits, JACCARD_K)
    raw_sets = f.topk_ids(x.raw_logits, JACCARD_K)
    top1 = _top1_ids(x.lens_logits, x.top1)
    pure, cols = _pure(x, lp, lq, sets, raw_sets, top1)
    rawlens = _rawlens(x, lp, lr, cols, top1)
    return NextTokenMetrics(
        pure=pure,
        rawlens=rawlens,
        milestones=_milestones(cols, x.start),
        raw_summary=_summary(rawlens),
        control_summary=f.control_summary(cols["control_margin"]) if x.is_control else None,
    )
