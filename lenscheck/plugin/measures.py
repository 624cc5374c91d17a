"""The extended measurements re-derived by the plugin, with code of its own.

``test_measurements`` (a generated test) reads the extended pure CSV, the rawlens and
milestones sidecars and the JSON as the files state them, and checks, per prompt:

* the rules each value obeys whatever the model: KL >= 0, Jaccard in [0, 1], p_top5 >=
  p_top1 >= p_answer, p_top1 and p_top5 the row's own listed probabilities, entropy_bits
  the row's entropy, answer rank 1 exactly when the answer is the top-1 id, a gap column
  filled exactly when its rank condition holds, entropy_gap_bits = entropy - teacher;
* the answer's rank and probability (the lens' where it is the logit lens, the raw
  lens') equal to the JSON's decoding-point ablation, which reads the same logits through
  code of its own (every dtype);
* the copy flags (strict at each threshold, soft at each window), norm_only_semantics,
  the milestones (CSV and JSON), the raw-vs-norm summary and a control prompt's summary,
  re-derived from the columns they are defined on; control_margin only on a control
  prompt's rows, the prompt it controls one of the run's;
* one top-1 per layer in every file: the rawlens sidecar's lens top-1 is the pure CSV's,
  its raw top-1 the ablation's raw one (a tie among equal logits, which bfloat16 has
  often, broken one way for all);
* under the logit lens in float32, every value recomputed from a fresh forward pass: the
  lens and raw-lens logits at the last position unembedded here, each statistic by its
  definition in float64 (KL at the last layer ~0: the lens there is the model's head), a
  control's margin from its own and the controlled prompt's answer ids; in half
  precision, both Jaccards from the run's own readout of the prompt's forward pass as the
  run made it.

Nothing here calls lenscheck.metrics: a slip in a metric's function shows as a
disagreement with this second derivation.
"""

from __future__ import annotations

import math
import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lenscheck.golden.payload import PromptFiles
    from lenscheck.plugin.session import LensRun

__all__ = ["check_measurements", "derive_milestones"]

_MAX_LINES = 8
#: Written fp32 values against this file's float64 recomputation.
_TOL = 2e-4
#: The same for values that read the raw lens (the un-normalized residual unembedded): its
#: rounding reaches the logits multiplied by the residual's norm, so its float32 noise is
#: the raw decoding point's (the calibrated raw_entropy tolerance, docs/tolerances.md); a
#: fresh forward pass against the pipeline's batch moved embedded-gemma3's layer-1
#: KL(P_norm || P_raw) by 2.5e-4 bits on an AVX2 CPU.
_RAW_TOL = 1.5e-3
_TAUS = (0.95, 0.9, 0.8, 0.7)
_SOFT_KS = (1, 2, 3)
_SOFT_TAU = 0.5
_JK = 50


def _plain(text: str) -> bool:
    return any(not c.isspace() and not unicodedata.category(c).startswith("P") for c in text)


def _contiguous(window: list[int], seq: list[int]) -> bool:
    n = len(window)
    return any(seq[i : i + n] == window for i in range(len(seq) - n + 1))


def _first(values: list[bool], start: int) -> int | None:
    for n, v in enumerate(values):
        if n >= start and v:
            return n
    return None


def derive_milestones(cols: dict[str, list[Any]], start: int) -> dict[str, Any]:
    """The milestones by their definitions, from the pure CSV's extended columns."""
    ranks, kl = cols["answer_rank"], cols["kl_to_final_bits"]
    out: dict[str, Any] = {}
    for r in (1, 5, 10):
        out[f"first_rank_le_{r}"] = _first([x is not None and x <= r for x in ranks], start)
    for b in (1.0, 0.5):
        out[f"first_kl_below_{b}"] = _first([x < b for x in kl], start)
    for tau in _TAUS:
        out[f"L_copy_strict@{tau}"] = _first(cols[f"copy_strict@{tau}"], start)
    best: tuple[int, int] | None = None
    for k in _SOFT_KS:
        layer = _first(cols[f"copy_soft_k{k}@{_SOFT_TAU}"], start)
        if layer is not None and (best is None or (layer, k) < best):
            best = (layer, k)
    out["L_copy_soft"], out["L_copy_soft_k"] = best if best else (None, None)
    return out


class _Problems(list[str]):
    def close(
        self, where: str, name: str, written: Any, expected: Any, tol: float, rel: bool = False
    ) -> None:
        """|written - expected| <= tol (``rel``: tol times max(1, |expected|), for values
        such as a raw lens' KL of hundreds of bits, whose fp32 rounding scales with them)."""
        if written is None or expected is None:
            if written != expected:
                self.append(f"{where}: {name} written {written!r}, expected {expected!r}")
            return
        if rel:
            tol *= max(1.0, abs(float(expected)))
        if not abs(float(written) - float(expected)) <= tol:
            self.append(f"{where}: {name} written {written!r}, the definition gives {expected!r}")


def _columns(files: PromptFiles) -> dict[str, list[Any]]:
    rows = [dict(r.extra) for r in files.pure.rows]
    return {c: [row.get(c) for row in rows] for c in (rows[0] if rows else {})}


def _row_rules(prompt: str, files: PromptFiles, cols: dict[str, list[Any]], out: _Problems) -> None:
    raw = files.rawlens.rows if files.rawlens is not None else []
    answer = files.json["diagnostics"].get("answer_first_id")
    for n, row in enumerate(files.pure.rows):
        where = f"{prompt}: layer {n}"
        probs = [p for _, p in row.topk]
        c = {k: v[n] for k, v in cols.items()}
        out.close(where, "entropy_bits", c["entropy_bits"], row.entropy, 1e-5)
        out.close(where, "p_top1", c["p_top1"], probs[0], 1e-6)
        out.close(where, "p_top5", c["p_top5"], math.fsum(probs[:5]), 1e-5)
        if not c["p_top5"] + 1e-6 >= c["p_top1"]:
            out.append(f"{where}: p_top5 {c['p_top5']!r} < p_top1 {c['p_top1']!r}")
        if c["p_answer"] is not None and not c["p_top1"] + 1e-6 >= c["p_answer"]:
            out.append(f"{where}: p_answer {c['p_answer']!r} > p_top1 {c['p_top1']!r}")
        if not c["kl_to_final_bits"] >= 0:
            out.append(f"{where}: kl_to_final_bits {c['kl_to_final_bits']!r} < 0")
        for key in (f"topk_jaccard_raw_norm@{_JK}", f"topk_jaccard_consecutive@{_JK}"):
            v = c[key]
            if (v is None) != (key.startswith("topk_jaccard_consecutive") and n == 0) or (
                v is not None and not 0.0 <= v <= 1.0
            ):
                out.append(f"{where}: {key} {v!r} (in [0, 1]; empty only at layer 0, consecutive)")
        rank = c["answer_rank"]
        if n < len(raw) and answer is not None:
            is_top = raw[n]["top1_token_id_norm"] == answer
            # Rank 1 counts the ids strictly above the answer: one that ties the top-1
            # exactly (bfloat16 logits do) has rank 1 whichever id the top-1 is.
            tie = rank == 1 and c["p_answer"] == c["p_top1"]
            if (rank == 1) != is_top and not tie:
                out.append(f"{where}: answer_rank {rank} but the answer is top-1: {is_top}")
        if (c["answer_logit_gap"] is None) != (rank != 1) or (c["answer_vs_top1_gap"] is None) != (
            rank is None or rank == 1
        ):
            out.append(
                f"{where}: answer_logit_gap {c['answer_logit_gap']!r} / answer_vs_top1_gap "
                f"{c['answer_vs_top1_gap']!r} do not follow answer_rank {rank}"
            )


def _copy_rules(
    prompt: str, tokenizer: Any, files: PromptFiles, cols: dict[str, list[Any]], out: _Problems
) -> None:
    if files.rawlens is None:
        return
    diag = files.json["diagnostics"]
    seq = [
        int(i)
        for i in tokenizer(files.json["prompt"]["context_prompt"], add_special_tokens=False)[
            "input_ids"
        ]
    ]
    margin, start = float(diag["copy_margin"]), int(diag.get("collapse_from_layer") or 0)
    ids = [int(r["top1_token_id_norm"]) for r in files.rawlens.rows]
    for n, row in enumerate(files.pure.rows):
        p1 = row.topk[0][1]
        p2 = row.topk[1][1] if len(row.topk) > 1 else 0.0
        text = str(tokenizer.decode([ids[n]]))
        for tau in _TAUS:
            want = n >= start and ids[n] in seq and p1 > tau and p1 - p2 > margin and _plain(text)
            if cols[f"copy_strict@{tau}"][n] != want:
                out.append(
                    f"{prompt}: layer {n}: copy_strict@{tau} written "
                    f"{cols[f'copy_strict@{tau}'][n]}, the rule gives {want}"
                )
        for k in _SOFT_KS:
            lo = n - k + 1
            want = lo >= start and p1 > _SOFT_TAU and _contiguous(ids[lo : n + 1], seq)
            if cols[f"copy_soft_k{k}@{_SOFT_TAU}"][n] != want:
                out.append(
                    f"{prompt}: layer {n}: copy_soft_k{k}@{_SOFT_TAU} written "
                    f"{cols[f'copy_soft_k{k}@{_SOFT_TAU}'][n]}, the rule gives {want}"
                )


def _sidecar_rules(
    prompt: str, files: PromptFiles, cols: dict[str, list[Any]], out: _Problems
) -> None:
    diag = files.json["diagnostics"]
    start = int(diag.get("collapse_from_layer") or 0)
    mine = derive_milestones(cols, start)
    for source, written in (
        ("milestones CSV", files.milestones.milestones() if files.milestones else None),
        ("JSON milestones", diag.get("milestones")),
    ):
        if written != mine:
            diff = {
                k: (written.get(k) if written else None, v)
                for k, v in mine.items()
                if not written or written.get(k) != v
            }
            out.append(f"{prompt}: {source} (written, derived): {diff}")
    if files.rawlens is None:
        return
    raw = files.rawlens.rows
    for n, r in enumerate(raw):
        where = f"{prompt}: rawlens layer {n}"
        want = r["answer_rank_norm"] == 1 and r["answer_rank_raw"] != 1
        if r["norm_only_semantics"] != want:
            out.append(f"{where}: norm_only_semantics {r['norm_only_semantics']}, rule {want}")
        for key in ("kl_norm_vs_raw_bits", "kl_raw_to_norm_bits", "js_divergence"):
            if not r[key] >= 0:
                out.append(f"{where}: {key} {r[key]!r} < 0")
        gap = r["entropy_bits_norm"] - cols["teacher_entropy_bits"][n]
        out.close(where, "entropy_gap_bits", r["entropy_gap_bits"], gap, 1e-5)
        for a, b in (
            ("entropy_bits_norm", "entropy_bits"),
            ("p_top1_norm", "p_top1"),
            ("answer_rank_norm", "answer_rank"),
            ("p_answer_norm", "p_answer"),
        ):
            out.close(where, a, r[a], cols[b][n], 1e-6)
        for key in (f"topk_jaccard_raw_norm@{_JK}", f"topk_jaccard_consecutive@{_JK}"):
            out.close(where, key, r[key], cols[key][n], 0.0)
    summary = diag.get("raw_lens_summary") or {}
    kl = [r["kl_norm_vs_raw_bits"] for r in raw]
    top = max(range(len(kl)), key=kl.__getitem__)
    only = [bool(r["norm_only_semantics"]) for r in raw]
    want_summary = {
        "max_kl_norm_vs_raw_bits": kl[top],
        "max_kl_norm_vs_raw_layer": top,
        "first_norm_only_semantics_layer": _first(only, 0),
        "n_norm_only_semantics": sum(only),
        "mean_topk_jaccard_raw_norm": math.fsum(r[f"topk_jaccard_raw_norm@{_JK}"] for r in raw)
        / len(raw),
    }
    for key, value in want_summary.items():
        out.close(f"{prompt}: raw_lens_summary", key, summary.get(key), value, 1e-9)


def _ablation_rules(
    prompt: str, files: PromptFiles, cols: dict[str, list[Any]], out: _Problems
) -> None:
    """The answer's rank and probability against the JSON's decoding-point ablation, which
    reads the same logits through code of its own: the raw lens' always (the rawlens
    sidecar and the ablation's raw point unembed the same rows), the lens' own where the
    run reads the logit lens (the ablation's chosen point). Where the answer's first id is
    the answer tokenized alone's (the ablation's id), ranks must be equal and
    probabilities equal to rounding in every dtype: a rank off by one shows in half
    precision, where no fresh recomputation is tight enough to."""
    diag = files.json["diagnostics"]
    block = diag.get("decoding_ablation") or {}
    pieces = diag.get("ground_truth_token_ids") or []
    a = diag.get("answer_first_id")
    if a is None or not pieces or pieces[0] != a:
        return
    # p from exp(log_softmax) here, from the softmax there: fp32 rounding of log p, which
    # grows with the logits' size (a raw lens' reach hundreds).
    sides: list[tuple[str, list[Any], list[Any], float, str]] = []
    point = str(diag.get("decode_norm"))
    if (diag.get("lens") or {}).get("kind", "logit") == "logit" and block.get(point):
        sides.append((point, cols["answer_rank"], cols["p_answer"], 1e-5, ""))
    if files.rawlens is not None and block.get("raw"):
        rows = files.rawlens.rows
        raw = [r["answer_rank_raw"] for r in rows], [r["p_answer_raw"] for r in rows]
        sides.append(("raw", *raw, 1e-4, "_raw"))
    for name, ranks, probs, tol, suffix in sides:
        ablation = block[name]
        for n, (rank, p) in enumerate(zip(ranks, probs)):
            where = f"{prompt}: layer {n}"
            if rank != ablation["answer_rank"][n]:
                out.append(
                    f"{where}: answer_rank{suffix} written {rank!r}, the decoding-point "
                    f"ablation's ({name}) {ablation['answer_rank'][n]!r}"
                )
            out.close(where, f"p_answer{suffix}", p, ablation["p_answer"][n], tol)


def _top1_rules(prompt: str, files: PromptFiles, out: _Problems) -> None:
    """One top-1 per layer in every file: the rawlens sidecar's lens top-1 is the pure
    CSV's, its raw top-1 the decoding-point ablation's raw one, and the ablation's top-1 at
    the run's point (under the logit lens) the pure CSV's. torch.topk breaks a tie among
    equal logits by its k (bfloat16 logits tie), so each file choosing for itself made
    them name different tokens for one distribution."""
    if files.rawlens is None:
        return
    diag = files.json["diagnostics"]
    block = diag.get("decoding_ablation") or {}
    raw_point = (block.get("raw") or {}).get("top1")
    chosen = block.get(str(diag.get("decode_norm"))) or {}
    logit = (diag.get("lens") or {}).get("kind", "logit") == "logit"
    for n, (row, r) in enumerate(zip(files.pure.rows, files.rawlens.rows)):
        where = f"{prompt}: layer {n}"
        text = str(row.topk[0][0])
        if r["top1_token_str_norm"] != text:
            out.append(
                f"{where}: rawlens top1_token_str_norm {r['top1_token_str_norm']!r}, the pure "
                f"CSV's top-1 {text!r}"
            )
        if raw_point is not None and r["top1_token_str_raw"] != raw_point[n]:
            out.append(
                f"{where}: rawlens top1_token_str_raw {r['top1_token_str_raw']!r}, the "
                f"decoding-point ablation's raw top-1 {raw_point[n]!r}"
            )
        if logit and chosen and chosen["top1"][n] != text:
            out.append(
                f"{where}: the decoding-point ablation's top-1 {chosen['top1'][n]!r} at the "
                f"run's point, the pure CSV's {text!r}"
            )


def _control_rules(
    prompt: str,
    files: PromptFiles,
    others: dict[str, Any],
    cols: dict[str, list[Any]],
    out: _Problems,
) -> None:
    """control_margin only on a control prompt's rows; its summary from the column."""
    summary = files.json["diagnostics"].get("control_summary")
    margins = cols.get("control_margin")
    if summary is None or margins is None:
        if (summary is None) != (margins is None):
            out.append(
                f"{prompt}: control_summary {summary!r} but control_margin column "
                f"{'absent' if margins is None else 'present'}: both or neither"
            )
        return
    if summary.get("control_for") not in others or summary.get("control_for") == prompt:
        out.append(f"{prompt}: control_for {summary.get('control_for')!r} is not another prompt")
    known = [(m, n) for n, m in enumerate(margins) if m is not None]
    top = max(known, key=lambda mn: (mn[0], -mn[1])) if known else (None, None)
    want = {
        "first_positive_margin_layer": _first([m is not None and m > 0 for m in margins], 0),
        "max_control_margin": top[0],
        "max_control_margin_layer": top[1],
    }
    for key, value in want.items():
        out.close(f"{prompt}: control_summary", key, summary.get(key), value, 0.0)


def _dist(logits: Any) -> tuple[Any, Any]:
    import torch

    x = logits.double()
    logp = x - torch.logsumexp(x, dim=-1, keepdim=True)
    return logp, logp.exp()


def _entropy(logp: Any, p: Any) -> list[float]:
    import torch

    return (-(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1) / math.log(2)).tolist()


def _kl(logp: Any, p: Any, logq: Any) -> list[float]:
    import torch

    return (
        torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(-1) / math.log(2)
    ).tolist()


def _cos(a: Any, b: Any) -> list[float]:
    a, b = a.double(), b.double()
    return ((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).tolist()


def _rank_bounds(
    prompt: str, name: str, written: list[Any], logits: Any, a: int, out: _Problems
) -> None:
    """Each written rank within what the logits allow: 1 + the ids clearly above the
    answer's logit, up to 1 + those above it within the readouts' rounding (ties)."""
    for n, (rank, row) in enumerate(zip(written, logits)):
        # 1e-5 was too tight: on embedded-qwen2 a tail rank (74822) moved by 2 between the
        # pipeline's logits and a fresh forward pass (other matmul shapes, fp32 rounding).
        eps = 1e-4 * max(1.0, abs(float(row[a])))
        lo = int((row > row[a] + eps).sum()) + 1
        hi = int((row > row[a] - eps).sum())  # the answer itself is within eps
        if rank is None or not lo <= rank <= max(lo, hi):
            out.append(
                f"{prompt}: layer {n}: {name} written {rank!r}, the logits give {lo}"
                + (f"..{hi}" if hi > lo else "")
            )


def _margin_rules(prompt: str, written: list[Any], pa: Any, pc: Any, out: _Problems) -> None:
    """The control margin against p_a - p_c in float64, within 1e-3 of the larger of the
    two probabilities: margins of two unlikely answers are ~1e-8, far below an absolute
    tolerance, and their fp32 error scales with the probabilities."""
    for n, (m, x, y) in enumerate(zip(written, pa.tolist(), pc.tolist())):
        out.close(f"{prompt}: layer {n}", "control_margin", m, x - y, 1e-3 * max(x, y) + 1e-12)


def _jaccards(lens: Any, raw: Any) -> dict[str, list[Any]]:
    """Both top-50 Jaccards by their definitions, from the lens' and the raw lens' logits
    [L+1, V] at the last position."""
    norm_sets = [set(r) for r in lens.topk(_JK, dim=-1).indices.tolist()]
    raw_sets = [set(r) for r in raw.topk(_JK, dim=-1).indices.tolist()]
    return {
        f"topk_jaccard_raw_norm@{_JK}": [
            len(x & y) / len(x | y) for x, y in zip(norm_sets, raw_sets)
        ],
        f"topk_jaccard_consecutive@{_JK}": [None]
        + [
            len(norm_sets[i - 1] & norm_sets[i]) / len(norm_sets[i - 1] | norm_sets[i])
            for i in range(1, len(norm_sets))
        ],
    }


def _half_jaccard_rules(
    lens_run: LensRun, prompt: str, files: PromptFiles, cols: dict[str, list[Any]], out: _Problems
) -> None:
    """In half precision, the Jaccards from the run's own readout of the prompt's forward
    pass remade as the run made it (with its probes: a pass of another shape rounds the
    half-precision residuals apart, and a float32 recompute of them moves the top-50
    boundary by more than reading the wrong layer does). What is this module's own is what
    a Jaccard adds to the logits: the sets, the pairing of layers and the arithmetic."""
    import torch

    from lenscheck.lenses.logit import LogitLens

    backend = lens_run.run.backend
    point = str(files.json["diagnostics"].get("decode_norm"))
    last = [r[-1:] for r in lens_run.capture_as_run(prompt).residuals]
    lens = LogitLens(backend, point).decode_all(last)[:, 0]
    raw = backend.unembed(torch.cat(last), fp32=True)
    for name, values in _jaccards(lens, raw).items():
        for n, v in enumerate(values):
            out.close(f"{prompt}: layer {n}", name, cols[name][n], v, _JACCARD_TOL)


#: One id swapped at the 50th place (1 - 49/51 < 0.04), where two logits tie within the
#: rounding of a matmul of another shape. Measured in bfloat16 and float16 (the embedded
#: and synthetic models, the built-in prompt and the capitals suite): 0 at every layer.
_JACCARD_TOL = 0.04


def _tensor_rules(
    lens_run: LensRun, prompt: str, files: PromptFiles, cols: dict[str, list[Any]], out: _Problems
) -> None:
    """The logit lens' values, recomputed from a fresh forward pass by their definitions."""
    import torch

    from lenscheck.norms import apply_norm_or_skip, decode_norm_modules

    backend = lens_run.run.backend
    diag = files.json["diagnostics"]
    point = str(diag.get("decode_norm"))
    capture = lens_run.capture(prompt)
    last = [r[-1:].float() for r in capture.residuals]
    normed = [
        apply_norm_or_skip(r, m).float()
        for r, m in zip(last, decode_norm_modules(backend.stack, point))
    ]
    lens = backend.unembed(torch.cat(normed), fp32=True).double()
    raw = backend.unembed(torch.cat(last), fp32=True).double()
    final = capture.logits[-1].double()
    logp, p = _dist(lens)
    logq, q = _dist(final[None])
    logr, pr = _dist(raw)
    a = diag.get("answer_first_id")
    bias = backend.unembed.bias
    b = 0 if bias is None else bias.double()
    want: dict[str, list[Any]] = {
        "entropy_bits": _entropy(logp, p),
        "kl_to_final_bits": _kl(logp, p, logq),
        "teacher_entropy_bits": _entropy(logq, q) * lens.shape[0],
        "p_top5": p.sort(-1, descending=True).values[:, :5].sum(-1).tolist(),
        "cos_to_final": _cos(lens - b, (final - b)[None]),
        "resid_norm_ratio": (
            torch.cat(normed).double().norm(dim=-1) / torch.cat(last).double().norm(dim=-1)
        ).tolist(),
        "delta_resid_cos": _cos(torch.cat(last), torch.cat(normed)),
    }
    if a is not None:
        want["p_answer"] = p[:, a].tolist()
    control = diag.get("control_summary")
    if control is not None:
        target = lens_run.files.get(str(control.get("control_for")))
        c = None if target is None else target.json["diagnostics"].get("answer_first_id")
        if a is not None and c is not None:
            _margin_rules(prompt, cols["control_margin"], p[:, a], p[:, c], out)
    if a is not None:
        _rank_bounds(prompt, "answer_rank", cols["answer_rank"], lens, a, out)
    want.update(_jaccards(lens, raw))
    for name, values in want.items():
        # A Jaccard may differ by one id swapped at the 50th place (_JACCARD_TOL).
        tol = 0.0 if name == "answer_rank" else _JACCARD_TOL if "jaccard" in name else _TOL
        for n, v in enumerate(values):
            out.close(f"{prompt}: layer {n}", name, cols[name][n], v, tol, rel=True)
    last_kl = cols["kl_to_final_bits"][-1]
    if point != "raw" and not last_kl <= _TOL:  # the raw lens skips the final norm
        out.append(
            f"{prompt}: kl_to_final_bits at the last layer {last_kl!r}, not ~0: the "
            "logit lens there is the model's own head"
        )
    if files.rawlens is not None:
        for n, r in enumerate(files.rawlens.rows):
            where = f"{prompt}: rawlens layer {n}"
            out.close(
                where,
                "kl_norm_vs_raw_bits",
                r["kl_norm_vs_raw_bits"],
                _kl(logp[n], p[n], logr[n]),
                _RAW_TOL,
                rel=True,
            )
            out.close(
                where,
                "kl_raw_to_norm_bits",
                r["kl_raw_to_norm_bits"],
                _kl(logr[n], pr[n], logp[n]),
                _RAW_TOL,
                rel=True,
            )
            out.close(
                where,
                "entropy_bits_raw",
                r["entropy_bits_raw"],
                _entropy(logr[n], pr[n]),
                _RAW_TOL,
                rel=True,
            )
            out.close(where, "p_top1_raw", r["p_top1_raw"], float(pr[n].max()), _RAW_TOL)
            out.close(
                where,
                "l1_prob_diff",
                r["l1_prob_diff"],
                float((p[n] - pr[n]).abs().sum()),
                _RAW_TOL,
            )
            if a is not None:
                out.close(where, "p_answer_raw", r["p_answer_raw"], float(pr[n, a]), _RAW_TOL)
        if a is not None:
            ranks = [r["answer_rank_raw"] for r in files.rawlens.rows]
            _rank_bounds(prompt, "rawlens answer_rank_raw", ranks, raw, a, out)


def check_measurements(lens_run: LensRun) -> list[str]:
    """Every disagreement between the extended files and their re-derivation (empty when
    all agree; nothing to check under the original schema)."""
    import torch

    tokenizer = lens_run.run.backend.codec.tokenizer
    out = _Problems()
    with torch.no_grad():
        for prompt, files in lens_run.files.items():
            cols = _columns(files)
            if not cols:
                continue
            _row_rules(prompt, files, cols, out)
            _copy_rules(prompt, tokenizer, files, cols, out)
            _sidecar_rules(prompt, files, cols, out)
            _ablation_rules(prompt, files, cols, out)
            _top1_rules(prompt, files, out)
            _control_rules(prompt, files, lens_run.files, cols, out)
            fp32 = lens_run.run.backend.dtype in (torch.float32, torch.float64)
            lens = (files.json["diagnostics"].get("lens") or {}).get("kind", "logit")
            if lens == "logit" and fp32:
                _tensor_rules(lens_run, prompt, files, cols, out)
            elif lens == "logit":
                _half_jaccard_rules(lens_run, prompt, files, cols, out)
    return out[:_MAX_LINES] + (
        [f"... and {len(out) - _MAX_LINES} more"] if len(out) > _MAX_LINES else []
    )
