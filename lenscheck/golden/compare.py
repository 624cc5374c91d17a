"""Compare a run's golden document with a stored golden, value by value.

Each value of the output files belongs to exactly one section, and each section to exactly
one generated test, so one drift fails one test. Prompts are paired by id (and, for files
that carry no id, by the hash of their text); a prompt whose text, answer or probes changed
is an identity change, reported apart from numeric drift.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lenscheck.collapse import ENTROPY_COLLAPSE_BITS
from lenscheck.golden.metrics import compare_metrics, compare_topk
from lenscheck.golden.payload import BACKEND_DEPENDENT_FACTS, CLASS_DEPENDENT_FACTS
from lenscheck.golden.tolerances import Tolerances
from lenscheck.metrics.table import class_cap, grid_metrics, tolerance_of
from lenscheck.vocab import DECODE_POINTS

__all__ = ["SECTIONS", "Drift", "DriftReport", "compare_golden", "pair_prompts"]

#: Every section, in report order; the generated test of each is ``test_<section>``.
SECTIONS = (
    "schema",
    "tokenization",
    "collapse",
    "trajectory",
    "records",
    "probes",
    "final_prediction",
    "decoding",
    "metrics",
)
_ENVIRONMENT_KEYS = ("diagnostics.versions.", "diagnostics.self_test.")


@dataclass(frozen=True)
class Drift:
    """One value out of tolerance; ``prompt``/``layer``/``pos`` say where (None: n/a)."""

    section: str
    metric: str
    golden: Any
    observed: Any
    tolerance: Any = 0
    layer: int | None = None
    prompt: str | None = None
    pos: int | None = None

    @property
    def delta(self) -> float | None:
        """|observed - golden| for numbers, else None."""
        numbers = (int, float)
        if isinstance(self.golden, bool) or isinstance(self.observed, bool):
            return None
        if isinstance(self.golden, numbers) and isinstance(self.observed, numbers):
            return abs(float(self.observed) - float(self.golden))
        return None

    @property
    def where(self) -> str:
        """``prompt capital-de layer 4 pos 7`` (the parts that apply)."""
        parts = []
        if self.prompt is not None:
            parts.append(f"prompt {self.prompt}")
        if self.layer is not None:
            parts.append(f"layer {self.layer}")
        if self.pos is not None:
            parts.append(f"pos {self.pos}")
        return " ".join(parts)


@dataclass
class DriftReport:
    """Every drift and near-tie found, what was compared, and prompt identity changes."""

    model: str
    golden_class: str
    run_class: str
    tolerance_note: str
    drifts: list[Drift] = field(default_factory=list)
    near_ties: list[Drift] = field(default_factory=list)
    #: Values beyond tolerance that the tolerances' outlier allowance let pass.
    outliers: list[Drift] = field(default_factory=list)
    compared: Counter[str] = field(default_factory=Counter)
    #: Largest |delta| of an entropy or probability, per section (0: all equal).
    max_delta: dict[str, float] = field(default_factory=dict)
    changed_prompts: dict[str, list[str]] = field(default_factory=dict)
    missing_prompts: list[str] = field(default_factory=list)
    removed_prompts: list[str] = field(default_factory=list)
    golden: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No value drifted beyond tolerance (near-ties and prompt changes do not count)."""
        return not self.drifts

    @property
    def identity_ok(self) -> bool:
        """Every prompt of the run has a golden entry for the same text, answer and probes."""
        return not self.changed_prompts and not self.missing_prompts

    def section(self, name: str) -> list[Drift]:
        """The drifts of one section."""
        return [d for d in self.drifts if d.section == name]

    def first_divergence(self, drifts: Sequence[Drift] | None = None) -> Drift | None:
        """The drift at the lowest layer (then position), else the first drift."""
        drifts = self.drifts if drifts is None else drifts
        layered = [d for d in drifts if d.layer is not None]
        if layered:
            # A drift without a position, () before (0,), is the layer's whole row.
            return min(layered, key=lambda d: (d.layer, () if d.pos is None else (d.pos,)))
        return drifts[0] if drifts else None


class _Comparer:
    """Appends drifts to a report and counts every value it compares."""

    def __init__(
        self,
        report: DriftReport,
        tol: Tolerances,
        lenient: bool,
        allowance: int,
        facts: dict[str, Any] | None = None,
    ) -> None:
        self.report, self.tol, self.lenient, self.allowance = report, tol, lenient, allowance
        self.facts = facts or {}
        #: The tolerances of the lens' own rows (records, trajectory): those of its point.
        self.lens_tol = tol.for_point(str(self.facts.get("decode_norm")))

    def unknown(self, g: Any, o: Any) -> bool:
        """In lenient mode (``lenscheck diff``), a value one side lacks is not drift."""
        return self.lenient and (g is None or o is None)

    def add(self, drift: Drift) -> None:
        self.report.drifts.append(drift)

    def beyond(self, drift: Drift, cap: float | None) -> None:
        """A value beyond its tolerance: an outlier when the tolerances allow some and it is
        within ``cap`` (None: a changed top-1, always an outlier candidate), else drift."""
        delta = drift.delta
        if self.tol.outlier_fraction > 0 and (cap is None or (delta is not None and delta <= cap)):
            self.report.outliers.append(drift)
        else:
            self.add(drift)

    def settle(self) -> None:
        """Sections with more outliers than allowed: every outlier of them is drift."""
        report = self.report
        counts: Counter[str] = Counter(d.section for d in report.outliers)
        over = {
            section
            for section, n in counts.items()
            if n > self.tol.outlier_fraction * report.compared[section]
        }
        report.drifts.extend(d for d in report.outliers if d.section in over)
        report.outliers = [d for d in report.outliers if d.section not in over]

    def equal(self, section: str, metric: str, g: Any, o: Any, **where: Any) -> None:
        self.report.compared[section] += 1
        if g != o and not self.unknown(g, o):
            self.add(Drift(section, metric, g, o, **where))

    def close(
        self,
        section: str,
        metric: str,
        g: Any,
        o: Any,
        tolerance: float,
        cap: float = 0.0,
        **where: Any,
    ) -> None:
        """|o - g| <= tolerance; up to ``cap`` it may be an outlier (see Tolerances). The
        |delta| counts in the section's max_delta."""
        delta = self._within(Drift(section, metric, g, o, tolerance, **where), cap)
        if delta is not None:
            self.report.max_delta[section] = max(self.report.max_delta.get(section, 0.0), delta)

    def rank(self, section: str, metric: str, g: Any, o: Any, **where: Any) -> None:
        """An answer rank within its slack; ranks stay out of max_delta, which reports
        entropies and probabilities."""
        slack = self.tol.rank_slack(g) if isinstance(g, int) else 0
        self._within(Drift(section, metric, g, o, slack, **where), 0.0)

    def _within(self, drift: Drift, cap: float) -> float | None:
        """Compare the drift's two numbers: their |delta| (NaN when a side is NaN), None when a
        side lacks its value."""
        g, o = drift.golden, drift.observed
        self.report.compared[drift.section] += 1
        if self.unknown(g, o):
            return None
        if g is None or o is None:
            self.add(drift)
            return None
        delta = abs(float(o) - float(g))
        if not delta <= drift.tolerance:  # NaN too: beyond() makes it drift, never an outlier
            self.beyond(drift, cap)
        return delta

    def top1(
        self, section: str, metric: str, g: Any, o: Any, gap: float | None, **where: Any
    ) -> None:
        """A changed top-1 fails unless the golden's top-1/top-2 gap was a near-tie."""
        self.report.compared[section] += 1
        if g == o or self.unknown(g, o):
            return
        drift = Drift(section, metric, g, o, self.tol.near_tie, **where)
        if gap is not None and gap < self.tol.near_tie:
            self.report.near_ties.append(drift)
        else:
            self.beyond(drift, None)

    def layer_index(self, section: str, g: Any, o: Any, **where: Any) -> None:
        """L_copy and friends: equal within the model's collapse allowance."""
        self.report.compared[section] += 1
        if self.unknown(g, o):
            return
        if (g is None) != (o is None) or (g is not None and abs(o - g) > self.allowance):
            self.add(Drift(section, where.pop("metric"), g, o, self.allowance, **where))


def _key_paths(tree: Any, prefix: str = "") -> dict[str, str]:
    """Flatten a JSON key tree into ``{"diagnostics.L_copy": "int", ...}`` (lists as ``[]``)."""
    if isinstance(tree, dict):
        out: dict[str, str] = {}
        for key, sub in tree.items():
            out.update(_key_paths(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(tree, list):
        return _key_paths(tree[0], f"{prefix}[]") if tree else {prefix: "[]"}
    return {prefix: str(tree)}


def _schema(c: _Comparer, golden: Mapping[str, Any], observed: Mapping[str, Any]) -> None:
    for key in ("records_header", "pure_header", "rawlens_header", "milestones_header"):
        g, o = golden["schema"].get(key), observed["schema"].get(key)
        if not c.unknown(g, o):
            c.equal("schema", key, g, o)
    c.equal(
        "schema", "csv_dialect", golden["schema"]["csv_dialect"], observed["schema"]["csv_dialect"]
    )
    g_paths = _key_paths(golden["schema"]["json_keys"])
    o_paths = _key_paths(observed["schema"]["json_keys"])
    for path in sorted(set(g_paths) | set(o_paths)):
        if c.lenient and path not in g_paths:
            continue  # new diagnostics are added, never renamed: not a drift for diff
        if path.startswith(_ENVIRONMENT_KEYS):
            continue  # installed libraries and whether --self-test ran: environment
        c.equal(
            "schema", f"json key {path}", g_paths.get(path, "absent"), o_paths.get(path, "absent")
        )
    for key in sorted(set(golden["model_stats"]) | set(observed["model_stats"])):
        c.equal(
            "schema",
            f"model_stats {key}",
            golden["model_stats"].get(key),
            observed["model_stats"].get(key),
        )
    same_class = golden.get("class") == observed.get("class")
    same_backend = _backend(golden) == _backend(observed)
    g_facts, o_facts = golden.get("facts") or {}, observed.get("facts") or {}
    for key in sorted(set(g_facts) | set(o_facts)):
        if key in CLASS_DEPENDENT_FACTS and not same_class:
            continue
        if key in BACKEND_DEPENDENT_FACTS and not same_backend:
            continue
        c.equal("schema", f"fact {key}", g_facts.get(key), o_facts.get(key))


def _backend(doc: Mapping[str, Any]) -> Any:
    return (doc.get("environment") or {}).get("backend")


def _gap(p1: Sequence[Any] | None, p2: Sequence[Any] | None, i: int) -> float | None:
    if p1 is None or p2 is None or p1[i] is None or p2[i] is None:
        return None
    return float(p1[i]) - float(p2[i])


@dataclass(frozen=True)
class _Place:
    """Where row i of parallel arrays sits: report location and metric-name prefix."""

    layer: int | None = None
    pos: int | None = None
    prefix: str = ""

    def name(self, metric: str) -> str:
        return f"{self.prefix} {metric}" if self.prefix else metric


def _rows(
    c: _Comparer,
    section: str,
    g: Mapping[str, Any],
    o: Mapping[str, Any],
    prompt: str,
    places: Sequence[_Place],
    tol: Tolerances | None = None,
) -> None:
    """Parallel arrays, row by row: the top-1 (a near-tie by the golden's p_top1 - p_top2),
    each value the metric table declares for the grid (``entropy``) by its tolerance class,
    p_top1, and the top-k pairs where both sides have them (``tol``: the tolerances of the
    values' decoding point, default the comparison's)."""
    n = len(g["top1"])
    if len(o["top1"]) != n:
        c.add(Drift(section, "row count", n, len(o["top1"]), prompt=prompt))
        return
    t = tol or c.tol
    values = [m for m in grid_metrics() if m.name in g and m.name in o]
    for i, at in enumerate(places):
        where: dict[str, Any] = {"prompt": prompt, "layer": at.layer, "pos": at.pos}
        gap = _gap(g["p_top1"], g["p_top2"], i)
        c.top1(section, at.name("top1"), g["top1"][i], o["top1"][i], gap, **where)
        for m in values:
            ga, oa = g[m.name][i], o[m.name][i]
            if m.tolerance == "exact" or m.kind in ("bool", "str"):
                c.equal(section, at.name(m.name), ga, oa, **where)
                continue
            bound = tolerance_of(m, t, ga)
            c.close(section, at.name(m.name), ga, oa, bound, class_cap(m.tolerance, t), **where)
        gp, op = g["p_top1"][i], o["p_top1"][i]
        c.close(section, at.name("p_top1"), gp, op, t.p_top1, t.p_cap, **where)
        if "topk" in g and "topk" in o:
            compare_topk(c, section, g["topk"][i], o["topk"][i], **where)


def _layers(n: int, prefix: str = "") -> list[_Place]:
    return [_Place(layer=i, prefix=prefix) for i in range(n)]


def _trajectory(c: _Comparer, g: Any, o: Any, prompt: str) -> None:
    n = len(g["layer"])
    if len(o["layer"]) != n:
        c.add(Drift("trajectory", "layer count", n, len(o["layer"]), prompt=prompt))
        return
    for i, (gl, ol) in enumerate(zip(g["layer"], o["layer"])):
        # Rows are compared by position: a shifted layer numbering is drift in itself.
        c.equal("trajectory", "layer index", gl, ol, prompt=prompt, layer=i)
    _rows(c, "trajectory", g, o, prompt, _layers(n), c.lens_tol)


def _records(c: _Comparer, g_entry: Any, o_entry: Any, prompt: str) -> None:
    g, o = g_entry["records"], o_entry["records"]
    if g is None or o is None:
        if not c.lenient:  # the original pipeline did not always keep a records CSV
            c.equal("records", "records CSV present", g is not None, o is not None, prompt=prompt)
        return
    shape_g = (len(g["top1"]), len(g["top1"][0]) if g["top1"] else 0)
    shape_o = (len(o["top1"]), len(o["top1"][0]) if o["top1"] else 0)
    if shape_g != shape_o:
        c.add(Drift("records", "layers x positions", shape_g, shape_o, prompt=prompt))
        return
    n_layers, n_pos = shape_g
    metrics = tuple(m for m in dict.fromkeys([*g, *o]) if m in g and m in o)
    for layer in range(n_layers):
        places = [_Place(layer=layer, pos=pos) for pos in range(n_pos)]
        row = {m: g[m][layer] for m in metrics}
        _rows(c, "records", row, {m: o[m][layer] for m in metrics}, prompt, places, c.lens_tol)


#: Which flag each collapse layer is the first layer of.
_LAYER_FLAGS = {
    "L_copy": ("copy_collapse",),
    "L_copy_H": ("entropy_collapse",),
    "L_semantic": ("is_answer",),
    "delta_layers": ("copy_collapse", "is_answer"),
}


def _near_threshold(c: _Comparer, flag: str, rows: Any, layer: int) -> bool:
    """Whether the golden's values at ``layer`` sit within tolerance of the flag's rule, so
    that rounding alone may flip it (copy: p1 > threshold and p1 - p2 > margin, or entropy
    < 1 bit; entropy collapse: entropy <= 1 bit; is_answer: the top-1 itself, a near-tie)."""
    t = c.tol
    p1, p2, h = rows["p_top1"][layer], rows["p_top2"][layer], rows["entropy"][layer]
    if None in (p1, p2, h):
        return False
    near_h = abs(h - ENTROPY_COLLAPSE_BITS) <= t.entropy
    if flag == "entropy_collapse":
        return near_h
    if flag == "is_answer":
        return p1 - p2 < t.near_tie
    threshold, margin = c.facts.get("copy_threshold"), c.facts.get("copy_margin")
    near_p = threshold is not None and abs(p1 - threshold) <= t.p_top1
    near_m = margin is not None and abs((p1 - p2) - margin) <= t.p_top1
    return near_h or near_p or near_m


def _collapse(c: _Comparer, g: Any, o: Any, prompt: str) -> None:
    """Every layer's flags (a flip where the golden sat at the rule's threshold is a near-tie)
    and the collapse layers (a move caused by such a flip is one too)."""
    ties: dict[str, set[int]] = {}
    for flag in ("copy_collapse", "entropy_collapse", "is_answer"):
        gf, of = g["flags"][flag], o["flags"][flag]
        ties[flag] = set()
        if len(gf) != len(of):
            c.add(Drift("collapse", f"{flag} layer count", len(gf), len(of), prompt=prompt))
            continue
        for layer, (a, b) in enumerate(zip(gf, of)):
            if a != b and not c.unknown(a, b) and _near_threshold(c, flag, g["next_token"], layer):
                c.report.compared["collapse"] += 1
                ties[flag].add(layer)
                c.report.near_ties.append(Drift("collapse", flag, a, b, layer=layer, prompt=prompt))
            else:
                c.equal("collapse", flag, a, b, prompt=prompt, layer=layer)
    _echo(c, g["collapse"].get("embedding_echo"), o["collapse"].get("embedding_echo"), prompt)
    for key, flags in _LAYER_FLAGS.items():
        ga, oa = g["collapse"].get(key), o["collapse"].get(key)
        moved_by_a_tie = ga != oa and any(
            layer in ties[f] for f in flags for layer in (ga, oa) if isinstance(layer, int)
        )
        if moved_by_a_tie:
            c.report.compared["collapse"] += 1
            c.report.near_ties.append(Drift("collapse", key, ga, oa, c.allowance, prompt=prompt))
        else:
            c.layer_index("collapse", ga, oa, prompt=prompt, metric=key)


def _echo(c: _Comparer, g: Any, o: Any, prompt: str) -> None:
    """Layer 0 (the embeddings), apart from the collapse rules: its top-1 and p(top-1), and
    which rules would fire there."""
    section = "collapse"
    if g is None or o is None:
        if not c.unknown(g, o):
            c.equal(section, "embedding echo present", g is not None, o is not None, prompt=prompt)
        return
    gap = None  # a changed top-1 at the embeddings is never a near-tie: they are exact ids
    c.top1(section, "embedding echo top1", g["top1"], o["top1"], gap, prompt=prompt, layer=0)
    c.close(section, "embedding echo p_top1", g["p_top1"], o["p_top1"], c.tol.p_top1, prompt=prompt)
    for key in sorted(set(g) - {"top1", "p_top1"}):
        c.equal(section, f"embedding echo {key}", g.get(key), o.get(key), prompt=prompt, layer=0)


def _tokenization(c: _Comparer, g: Any, o: Any, prompt: str) -> None:
    gt, ot = g["tokenization"], o["tokenization"]
    for key in sorted((set(gt) | set(ot)) - {"other_bos"}):
        c.equal("tokenization", key, gt.get(key), ot.get(key), prompt=prompt)
    _other_bos(c, gt.get("other_bos"), ot.get("other_bos"), prompt)


def _other_bos(c: _Comparer, g: Any, o: Any, prompt: str) -> None:
    """The model's own answer under the other BOS policy (one extra forward pass): which
    policy and ids exactly, its top-1 (a near-tie by the golden's top-1/top-2 gap), its
    probability within the final prediction's tolerance."""
    section = "tokenization"
    if g is None or o is None:
        c.equal(section, "other BOS policy", g, o, prompt=prompt)
        return
    for key in ("policy", "input_ids"):
        c.equal(section, f"other BOS {key}", g.get(key), o.get(key), prompt=prompt)
    gap = None if "final_p_top2" not in g else g["final_p_top1"] - g["final_p_top2"]
    c.top1(section, "other BOS final_top1", g["final_top1"], o["final_top1"], gap, prompt=prompt)
    metric = "other BOS final_p_top1"
    c.close(section, metric, g["final_p_top1"], o["final_p_top1"], c.tol.final_prob, prompt=prompt)


def _probes(c: _Comparer, g: Any, o: Any, prompt: str) -> None:
    gp, op = g["probes"], o["probes"]
    if c.unknown(gp, op):
        return
    if gp["prompt"] != op["prompt"]:
        c.add(Drift("probes", "probe prompts", gp["prompt"], op["prompt"], prompt=prompt))
        return
    _rows(c, "probes", gp, op, prompt, [_Place(prefix=f"probe {t!r}") for t in gp["prompt"]])


def _top5(
    c: _Comparer, section: str, golden: list[list[Any]], observed: list[list[Any]], prompt: str
) -> None:
    """The model's own top-5: the order and each token's probability.

    A changed order is a near-tie when the golden probabilities it spans were within the
    near-tie gap: from the first to the last position that differs or, when a token from
    outside the golden top-5 came in (its golden probability is unknown), from the first
    position that differs down to 0. A top-5 of another length is never a near-tie.
    """
    g_tokens, o_tokens = [t for t, _ in golden], [t for t, _ in observed]
    probs = [float(p) for _, p in golden]
    mismatch = [i for i, (a, b) in enumerate(zip(g_tokens, o_tokens)) if a != b]
    gap = None
    if mismatch and len(g_tokens) == len(o_tokens):
        entered = not set(o_tokens) <= set(g_tokens)
        gap = probs[mismatch[0]] - (0.0 if entered else probs[mismatch[-1]])
    c.top1(section, "top5 tokens", g_tokens, o_tokens, gap, prompt=prompt)
    seen = dict((t, p) for t, p in observed)
    for rank, (tok, gp) in enumerate(golden, start=1):
        if tok in seen:
            c.close(
                section, f"p(top{rank} {tok!r})", gp, seen[tok], c.tol.final_prob, prompt=prompt
            )


def _final(c: _Comparer, g: Any, o: Any, prompt: str) -> None:
    """The model's own final distribution: entropy, top-5, and the temperature rows."""
    section = "final_prediction"
    gf, of = g["final_prediction"], o["final_prediction"]
    if c.unknown(gf, of):
        return
    tol = c.tol
    c.close(
        section,
        "entropy",
        gf["entropy"],
        of["entropy"],
        tol.entropy,
        tol.entropy_cap,
        prompt=prompt,
    )
    _top5(c, section, gf["top5"], of["top5"], prompt)
    gt, ot = g["temperature"], o["temperature"]
    if c.unknown(gt, ot):
        return
    if gt["temperature"] != ot["temperature"]:
        c.add(Drift(section, "temperatures", gt["temperature"], ot["temperature"], prompt=prompt))
        return
    places = [_Place(prefix=f"T={t}") for t in gt["temperature"]]
    _rows(c, section, gt, ot, prompt, places)


def _decoding(c: _Comparer, g: Any, o: Any, prompt: str) -> None:
    """The decoding-point ablation: per point, L_semantic and every layer's next token."""
    section = "decoding"
    gd, od = g["decoding"], o["decoding"]
    if gd is None or od is None:
        if not c.lenient:  # files written before the ablation existed
            c.equal(
                section, "decoding ablation present", gd is not None, od is not None, prompt=prompt
            )
        return
    flag = "onset_disagreement"
    c.equal(section, flag, gd[flag], od[flag], prompt=prompt)
    for point in DECODE_POINTS:
        gp, op = gd[point], od[point]
        metric = f"{point} L_semantic"
        c.layer_index(section, gp["L_semantic"], op["L_semantic"], prompt=prompt, metric=metric)
        n = len(gp["top1"])
        if len(op["top1"]) != n:
            c.add(Drift(section, f"{point} layer count", n, len(op["top1"]), prompt=prompt))
            continue
        places = _layers(n, prefix=point)
        tol = c.tol.for_point(point)
        _rows(c, section, gp, op, prompt, places, tol)
        for i, at in enumerate(places):
            ga, oa = gp["p_answer"][i], op["p_answer"][i]
            c.close(
                section, at.name("p_answer"), ga, oa, tol.p_top1, tol.p_cap, prompt=prompt, layer=i
            )
            ga, oa = gp["answer_rank"][i], op["answer_rank"][i]
            c.rank(section, at.name("answer_rank"), ga, oa, prompt=prompt, layer=i)


_PROMPT_SECTIONS: dict[str, Callable[[_Comparer, Any, Any, str], None]] = {
    "tokenization": _tokenization,
    "collapse": _collapse,
    "records": _records,
    "probes": _probes,
    "final_prediction": _final,
    "decoding": _decoding,
    "metrics": compare_metrics,
}


def pair_prompts(
    golden: Mapping[str, Any], observed: Mapping[str, Any]
) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(golden id, run id) pairs, the run's ids without a golden entry, the golden's ids
    the run lacks. By id first; what is left pairs by the hash of text, answer and probes."""
    g_ids, o_ids = list(golden), list(observed)
    pairs = [(i, i) for i in o_ids if i in golden]
    g_left = [i for i in g_ids if i not in observed]
    o_left = [i for i in o_ids if i not in golden]
    by_hash = {golden[i]["sha256"]: i for i in g_left}
    for i in list(o_left):
        match = by_hash.pop(observed[i]["sha256"], None)
        if match is not None:
            pairs.append((match, i))
            o_left.remove(i)
            g_left.remove(match)
    return pairs, o_left, g_left


def compare_golden(
    golden: dict[str, Any],
    observed: dict[str, Any],
    tol: Tolerances,
    *,
    tolerance_note: str = "",
    collapse_allowance: int = 0,
    sections: tuple[str, ...] = SECTIONS,
    lenient: bool = False,
) -> DriftReport:
    """Every drift of ``observed`` from ``golden`` in ``sections``.

    ``lenient`` (``lenscheck diff``): values unknown on either side (None) and JSON keys
    that only ``observed`` has are not drift, so historical files compare with new ones.
    """
    report = DriftReport(
        model=str(observed.get("model")),
        golden_class=str(golden.get("class")),
        run_class=str(observed.get("class")),
        tolerance_note=tolerance_note,
        golden=golden,
        observed=observed,
    )
    c = _Comparer(report, tol, lenient, collapse_allowance, golden.get("facts"))
    if "schema" in sections:
        _schema(c, golden, observed)
    pairs, report.missing_prompts, report.removed_prompts = pair_prompts(
        golden["prompts"], observed["prompts"]
    )
    for gid, oid in pairs:
        g, o = golden["prompts"][gid], observed["prompts"][oid]
        if g["sha256"] != o["sha256"]:
            report.changed_prompts[oid] = [
                key for key in ("prompt", "answer") if g.get(key) != o.get(key)
            ] or ["probes"]
            continue
        for name in sections:
            if name == "trajectory":
                _trajectory(c, g["next_token"], o["next_token"], oid)
            elif name in _PROMPT_SECTIONS:
                _PROMPT_SECTIONS[name](c, g, o, oid)
    c.settle()
    return report
