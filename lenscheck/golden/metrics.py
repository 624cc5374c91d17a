"""The golden comparison of the extended schema's measurements (section ``metrics``).

Every column is compared by its declaration's tolerance class (lenscheck.metrics.table):
exact values equal, numbers within their class' tolerance, and answer ranks exactly where
the rank is small (<= :data:`SMALL_RANK`) and the answer's probability is clear of its
neighbours' by more than the near-tie gap; elsewhere a changed rank beyond the tolerance's
rank slack is a near-tie, counted in the report. A copy flag that flips where the golden's
p(top-1) sat within tolerance of its threshold is a near-tie too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lenscheck.metrics.table import COPY_STRICT_TAUS, Metric, metric, tolerance_of

if TYPE_CHECKING:
    from lenscheck.golden.compare import _Comparer

__all__ = ["SMALL_RANK", "compare_metrics", "compare_topk"]

#: Ranks up to this one compare exactly when clear of their neighbours.
SMALL_RANK = 10
_SECTION = "metrics"


def compare_topk(
    c: _Comparer,
    section: str,
    golden: Sequence[Sequence[Any]],
    observed: Sequence[Sequence[Any]],
    **where: Any,
) -> None:
    """Every top-k pair 1..k: the order (a change is a near-tie when the golden
    probabilities it spans were within the near-tie gap) and each token's probability."""
    from lenscheck.golden.compare import Drift

    g_tokens, o_tokens = [t for t, _ in golden], [t for t, _ in observed]
    probs = [float(p) for _, p in golden]
    c.report.compared[section] += 1
    if g_tokens != o_tokens and not c.unknown(golden, observed):
        mismatch = [i for i, (a, b) in enumerate(zip(g_tokens, o_tokens)) if a != b]
        drift = Drift(section, "top-k tokens", g_tokens, o_tokens, c.tol.near_tie, **where)
        gap = None
        if mismatch and len(g_tokens) == len(o_tokens):
            # A token from outside the golden's top-k: its golden probability is unknown
            # (below the golden's last), so the span reaches down to 0.
            entered = not set(o_tokens) <= set(g_tokens)
            gap = probs[mismatch[0]] - (0.0 if entered else probs[mismatch[-1]])
        if gap is not None and gap < c.tol.near_tie:
            c.report.near_ties.append(drift)
        else:
            c.beyond(drift, None)
    # Paired by text in order of appearance: several ids may show as one text (byte
    # fragments all decode to U+FFFD), the n-th golden one is the n-th observed one.
    seen: dict[str, list[Any]] = {}
    for t, p in observed:
        seen.setdefault(t, []).append(p)
    for rank, (tok, gp) in enumerate(golden, start=1):
        if seen.get(tok):
            op = seen[tok].pop(0)
            c.close(section, f"p(top{rank} {tok!r})", gp, op, c.tol.p_top1, **where)


def _neighbour_gap(rank: int | None, p_answer: Any, topk: Sequence[Sequence[Any]] | None) -> Any:
    """The golden answer's probability gap to the ids ranked next to it, where the row's
    top-k shows them (None: unknown)."""
    if rank is None or p_answer is None or topk is None or rank > len(topk):
        return None
    probs = [float(p) for _, p in topk]
    around = [probs[i] for i in (rank - 2, rank) if 0 <= i < len(probs)]
    return min((abs(float(p_answer) - p) for p in around), default=None)


def _rank(c: _Comparer, name: str, g: Any, o: Any, gap: Any, **where: Any) -> None:
    from lenscheck.golden.compare import Drift

    c.report.compared[_SECTION] += 1
    if g == o or c.unknown(g, o):
        return
    drift = Drift(_SECTION, name, g, o, 0, **where)
    if g is None or o is None:
        c.add(drift)
        return
    clear = gap is None or gap > c.tol.near_tie
    # Small on either side: an answer that entered or left the top ranks is never noise.
    if min(g, o) <= SMALL_RANK and clear:
        c.beyond(drift, None)  # drift, or an outlier where the tolerances allow some
    elif abs(o - g) > c.tol.rank_slack(g):
        c.report.near_ties.append(drift)


def _near_copy_threshold(c: _Comparer, name: str, p1: Any) -> bool:
    for tau in COPY_STRICT_TAUS:
        if name == f"copy_strict@{tau}" and p1 is not None:
            return abs(float(p1) - tau) <= c.tol.p_top1
    return name.startswith("copy_soft") and p1 is not None and abs(float(p1) - 0.5) <= c.tol.p_top1


def _exact(c: _Comparer, name: str, g: Any, o: Any, **where: Any) -> None:
    """An exact value (an id, a flag, a layer): equal; where the tolerances allow outliers
    (half precision against float32) a changed one is an outlier candidate, as a changed
    top-1 is (these are top-1 ids and the rules and layers read from them)."""
    c.top1(_SECTION, name, g, o, None, **where)


def _value(c: _Comparer, m: Metric, name: str, g: Any, o: Any, p1: Any, **where: Any) -> None:
    from lenscheck.golden.compare import Drift

    if m.tolerance == "exact" or m.kind in ("bool", "str") or g is None or o is None:
        if g != o and not c.unknown(g, o) and _near_copy_threshold(c, name, p1):
            c.report.compared[_SECTION] += 1
            c.report.near_ties.append(Drift(_SECTION, name, g, o, **where))
        else:
            _exact(c, name, g, o, **where)
        return
    c.close(_SECTION, name, g, o, tolerance_of(m, c.tol, _number(g)), **where)


def _columns(
    c: _Comparer,
    file: str,
    g: Mapping[str, list[Any]],
    o: Mapping[str, list[Any]],
    prompt: str,
    topk: Sequence[Any] | None,
) -> None:
    from lenscheck.golden.compare import Drift

    for col in list(dict.fromkeys([*g, *o])):
        gv, ov = g.get(col), o.get(col)
        if gv is None or ov is None:
            if not c.lenient:
                c.equal(
                    _SECTION,
                    f"{file} column {col} present",
                    gv is not None,
                    ov is not None,
                    prompt=prompt,
                )
            continue
        if len(gv) != len(ov):
            c.add(Drift(_SECTION, f"{file} {col} layer count", len(gv), len(ov), prompt=prompt))
            continue
        try:
            m = metric("pure" if file == "next_token" else "rawlens", col)
        except KeyError:
            for layer, (a, b) in enumerate(zip(gv, ov)):
                _exact(c, f"{file} {col}", a, b, prompt=prompt, layer=layer)
            continue
        side = "_raw" if col.endswith("_raw") else "_norm" if col.endswith("_norm") else ""
        p_col = {"": "p_answer", "_raw": "p_answer_raw", "_norm": "p_answer_norm"}[side]
        p1_col = "p_top1" if file == "next_token" else f"p_top1{side or '_norm'}"
        for layer, (a, b) in enumerate(zip(gv, ov)):
            where = {"prompt": prompt, "layer": layer}
            name = f"{file} {col}"
            if m.tolerance == "rank":
                pa = (g.get(p_col) or [None] * len(gv))[layer]
                row_topk = topk[layer] if topk is not None and side != "_raw" else None
                _rank(c, name, a, b, _neighbour_gap(a, pa, row_topk), **where)
            else:
                p1 = (g.get(p1_col) or [None] * len(gv))[layer]
                _value(c, m, name, a, b, p1, **where)


def compare_metrics(c: _Comparer, g_entry: Any, o_entry: Any, prompt: str) -> None:
    """The ``metrics`` section of one prompt: the pure CSV's extended columns, the rawlens
    sidecar, the milestones, the raw-vs-norm summary and a control prompt's summary."""
    from lenscheck.golden.compare import Drift

    g, o = g_entry.get("metrics"), o_entry.get("metrics")
    if g is None or o is None:
        if not c.unknown(g, o):
            c.equal(
                _SECTION,
                "extended measurements present",
                g is not None,
                o is not None,
                prompt=prompt,
            )
        return
    topk = (g_entry.get("next_token") or {}).get("topk")
    _columns(c, "next_token", g["next_token"] or {}, o["next_token"] or {}, prompt, topk)
    for part in ("rawlens", "milestones", "raw_lens_summary", "control_summary"):
        gp, op = g.get(part), o.get(part)
        if part == "control_summary" and gp is None and op is None:
            continue  # not a control prompt: nothing to compare (older goldens lack the key)
        if gp is None or op is None:
            if not c.unknown(gp, op):
                c.equal(_SECTION, f"{part} present", gp is not None, op is not None, prompt=prompt)
            continue
        if part == "rawlens":
            _columns(c, part, gp, op, prompt, topk)
        else:
            for key in list(dict.fromkeys([*gp, *op])):
                m = _summary_metric(part, key)
                margins = (g.get("next_token") or {}).get("control_margin")
                g_v, o_v = gp.get(key), op.get(key)
                if part == "control_summary" and _margin_near_tie(c, key, g_v, o_v, margins):
                    c.report.compared[_SECTION] += 1
                    c.report.near_ties.append(
                        Drift(_SECTION, f"{part} {key}", g_v, o_v, prompt=prompt)
                    )
                elif m is None or m.tolerance == "exact":
                    _exact(c, f"{part} {key}", gp.get(key), op.get(key), prompt=prompt)
                else:
                    c.close(
                        _SECTION,
                        f"{part} {key}",
                        gp.get(key),
                        op.get(key),
                        tolerance_of(m, c.tol, _number(gp.get(key))),
                        prompt=prompt,
                    )


def _number(value: Any) -> float | None:
    """A golden value as a float (a divergence's tolerance grows with it); None: none."""
    return float(value) if isinstance(value, (int, float)) else None


def _margin_near_tie(c: _Comparer, key: str, g: Any, o: Any, margins: Any) -> bool:
    """A control summary's layer that moved where the golden's margins it is read from were
    within tolerance of the rule's boundary: 0 for the first positive margin, the maximum
    for its layer (margins of two unlikely answers sit at ~1e-8 on a random model)."""
    if g == o or not isinstance(margins, list) or key not in _MARGIN_LAYERS:
        return False
    tol = c.tol.p_top1
    known = [m for m in margins if m is not None]
    if key == "first_positive_margin_layer":
        upto = len(margins) if g is None or o is None else max(g, o) + 1
        return any(m is not None and abs(m) <= tol for m in margins[:upto])
    if g is None or o is None or not known or max(g, o) >= len(margins):
        return False
    return all(margins[n] is not None and max(known) - margins[n] <= tol for n in (g, o))


_MARGIN_LAYERS = ("first_positive_margin_layer", "max_control_margin_layer")


def _summary_metric(part: str, key: str) -> Metric | None:
    from lenscheck.metrics.table import METRICS

    file = "milestones" if part == "milestones" else "json"
    return next((m for m in METRICS if m.file == file and m.name == key), None)
