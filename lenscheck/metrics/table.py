"""The metric table: every measurement lenscheck writes, declared once.

A declaration says what a number is (name, unit, one-line definition), where it is (its
file and column, or its JSON key), at which scope it is measured (a records cell, a
next-token row, a prompt, the model), under which schema it is written, and how far a
golden lets it move (a tolerance class, resolved per dtype class by :func:`tolerance_of`).

Who reads it: the extended pure next-token CSV's columns and both sidecars' headers
(lenscheck.metrics.files), the golden payload and its comparison (lenscheck.golden), and
so the drift report and ``lenscheck diff``, and docs/metrics.md, whose tables
tests/test_metric_table.py checks against :func:`markdown_table`. Today's files (the
``original`` declarations) are written by lenscheck.schema byte for byte as before, their
headers and flag columns built from these declarations (``topN``/``probN``: one pair per
top-k entry).

Adding a metric: one :class:`Metric` here, one pure function in
lenscheck.metrics.functions with its property test, and its value in
lenscheck.metrics.nexttoken (docs/development.md has an example).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from lenscheck.vocab import RAW

if TYPE_CHECKING:
    from lenscheck.golden.tolerances import Tolerances

__all__ = [
    "CONTROL_SUMMARY_KEY",
    "COPY_SOFT_KS",
    "COPY_SOFT_TAU",
    "COPY_STRICT_TAUS",
    "JACCARD_K",
    "METRICS",
    "MILESTONES_COLUMNS",
    "TOLERANCE_CLASSES",
    "Metric",
    "Pin",
    "Scope",
    "class_cap",
    "class_tolerance",
    "columns",
    "declared",
    "grid_metrics",
    "markdown_table",
    "metric",
    "tolerance_of",
]

Scope = Literal["cell", "next-token row", "prompt", "model"]
Kind = Literal["float", "int", "bool", "str"]
Pin = Literal["value", "topk", "index", "derived"]
#: Where a value lives: a CSV of one prompt (by its file kind) or its JSON.
FileKind = Literal["records", "pure", "rawlens", "milestones", "json"]

#: The copy sweeps' thresholds, the soft rule's window lengths and threshold, and the
#: top-k of the Jaccard columns (the names carry them: ``copy_strict@0.9``).
COPY_STRICT_TAUS = (0.95, 0.9, 0.8, 0.7)
COPY_SOFT_KS = (1, 2, 3)
COPY_SOFT_TAU = 0.5
JACCARD_K = 50

#: Tolerance classes and what each compares with: ``exact`` (ids, texts, flags, layers),
#: ``entropy`` (bits: entropies, KL, JS), ``prob`` (probabilities and other values in
#: [0, 1] or [-1, 1] whose noise is a probability's: cosines, ratios, L1), ``logit``
#: (logit differences: the ``logit`` tolerance, calibrated for float32, else ten times
#: the entropy one), ``rank`` (an answer rank: exact where small and clear of its
#: neighbours, see lenscheck.golden.metrics), ``set`` (a Jaccard of top-50 sets: one id
#: swapped at the 50th place moves it by 0.04; the ``jaccard`` tolerance, calibrated for
#: float32, else four times the rank one). A value that reads the raw lens (``raw``) gets
#: the raw decoding point's tolerances (Tolerances.for_point). ``divergence`` (KL and JS
#: in bits, up to hundreds between the raw and the normed lens): the entropy tolerance or
#: ``divergence_rel`` times the golden value, whichever is larger.
TOLERANCE_CLASSES = ("exact", "entropy", "divergence", "prob", "logit", "rank", "set")


@dataclass(frozen=True)
class Metric:
    """One measurement: what it is, where it is written, how far a golden lets it move."""

    name: str
    scope: Scope
    unit: str
    file: FileKind
    #: The CSV column (or, in the milestones CSV, the row's ``milestone`` name); None for
    #: a JSON-only value.
    column: str | None
    json_key: str | None
    tolerance: str
    definition: str
    #: ``original``: in today's files under every schema; ``extended``: only there.
    schema: str = "extended"
    kind: Kind = "float"
    #: Whether an empty cell (JSON null) is a valid value (a gap that does not apply).
    optional: bool = False
    #: Whether the value reads the raw lens (the un-normalized residual unembedded): its
    #: fp32 noise is the raw decoding point's, about 10x a normed lens' (docs/tolerances.md),
    #: so it gets the raw tolerances.
    raw: bool = False
    #: How a golden pins the value: ``value`` (its own grid or array, compared by its
    #: tolerance class), ``topk`` (the ``topN``/``probN`` pair: one list of pairs per row,
    #: lenscheck.golden.metrics.compare_topk), ``index`` (a grid's coordinates, or the
    #: prompt's tokens, pinned in the tokenization section), ``derived`` (recomputed from
    #: pinned values when the file is parsed: ``rest_mass``, which lenscheck.schema refuses
    #: beyond 1e-9 of ``1 - sum of the pairs``).
    golden: Pin = "value"

    def __post_init__(self) -> None:
        if self.tolerance not in TOLERANCE_CLASSES:
            raise ValueError(
                f"metric {self.name}: tolerance class must be one of {TOLERANCE_CLASSES}, "
                f"got {self.tolerance!r}"
            )


def _m(
    name: str,
    scope: Scope,
    unit: str,
    file: FileKind,
    tolerance: str,
    definition: str,
    *,
    column: str | None = "",
    json_key: str | None = None,
    schema: str = "extended",
    kind: Kind = "float",
    optional: bool = False,
    raw: bool = False,
    golden: Pin = "value",
) -> Metric:
    return Metric(
        name,
        scope,
        unit,
        file,
        name if column == "" else column,
        json_key,
        tolerance,
        definition,
        schema,
        kind,
        optional,
        raw,
        golden,
    )


_ORIGINAL: tuple[Metric, ...] = (
    _m(
        "layer",
        "cell",
        "index",
        "records",
        "exact",
        "lens layer 0..L (0: the embeddings)",
        schema="original",
        golden="index",
        kind="int",
    ),
    _m(
        "pos",
        "cell",
        "index",
        "records",
        "exact",
        "position in the forward tokens",
        schema="original",
        golden="index",
        kind="int",
    ),
    _m(
        "token",
        "cell",
        "text",
        "records",
        "exact",
        "the input token at pos, decoded alone",
        schema="original",
        golden="index",
        kind="str",
    ),
    _m(
        "entropy",
        "cell",
        "bits",
        "records",
        "entropy",
        "H of the lens distribution at the cell",
        schema="original",
    ),
    _m(
        "topN",
        "cell",
        "text",
        "records",
        "exact",
        "the N-th most likely token (N <= 20 at a verbose position, else 5)",
        schema="original",
        golden="topk",
        kind="str",
    ),
    _m(
        "probN",
        "cell",
        "probability",
        "records",
        "prob",
        "its full-softmax probability",
        schema="original",
        golden="topk",
    ),
    _m(
        "rest_mass",
        "cell",
        "probability",
        "records",
        "prob",
        "max(0, 1 - sum of the listed probabilities)",
        schema="original",
        golden="derived",
    ),
    _m(
        "copy_collapse",
        "next-token row",
        "bool",
        "pure",
        "exact",
        "top-1 in the prompt, p1 > copy_threshold, p1 - p2 > copy_margin; or entropy < 1 bit",
        schema="original",
        kind="bool",
    ),
    _m(
        "entropy_collapse",
        "next-token row",
        "bool",
        "pure",
        "exact",
        "entropy <= 1 bit",
        schema="original",
        kind="bool",
    ),
    _m(
        "is_answer",
        "next-token row",
        "bool",
        "pure",
        "exact",
        "the top-1 text, trimmed, equals the answer, trimmed",
        schema="original",
        kind="bool",
    ),
    _m(
        "L_copy",
        "prompt",
        "layer",
        "json",
        "exact",
        "first layer whose copy_collapse is true",
        column=None,
        json_key="diagnostics.L_copy",
        schema="original",
        kind="int",
        optional=True,
    ),
    _m(
        "L_copy_H",
        "prompt",
        "layer",
        "json",
        "exact",
        "first layer whose entropy_collapse is true",
        column=None,
        json_key="diagnostics.L_copy_H",
        schema="original",
        kind="int",
        optional=True,
    ),
    _m(
        "L_semantic",
        "prompt",
        "layer",
        "json",
        "exact",
        "first layer whose is_answer is true",
        column=None,
        json_key="diagnostics.L_semantic",
        schema="original",
        kind="int",
        optional=True,
    ),
    _m(
        "delta_layers",
        "prompt",
        "layers",
        "json",
        "exact",
        "L_semantic - L_copy",
        column=None,
        json_key="diagnostics.delta_layers",
        schema="original",
        kind="int",
        optional=True,
    ),
    _m(
        "kl_bits_last_pos",
        "prompt",
        "bits",
        "json",
        "entropy",
        "KL(model || lens) at the last layer and position",
        column=None,
        json_key="diagnostics.last_layer_consistency.kl_bits_last_pos",
        schema="original",
    ),
    _m(
        "final_entropy",
        "prompt",
        "bits",
        "json",
        "entropy",
        "entropy of the model's own next-token distribution",
        column=None,
        json_key="final_prediction.entropy",
        schema="original",
    ),
    _m(
        "d_vocab",
        "model",
        "count",
        "json",
        "exact",
        "vocabulary size",
        column=None,
        json_key="model_stats.d_vocab",
        schema="original",
        kind="int",
    ),
)


def _pure_extended() -> tuple[Metric, ...]:
    row: Scope = "next-token row"
    out = [
        _m("entropy_bits", row, "bits", "pure", "entropy", "H(P_L)"),
        _m("p_top1", row, "probability", "pure", "prob", "max P_L"),
        _m("p_top5", row, "probability", "pure", "prob", "sum of the 5 largest P_L"),
        _m(
            "p_answer",
            row,
            "probability",
            "pure",
            "prob",
            "P_L[a], a the answer's first id",
            optional=True,
        ),
        _m(
            "answer_rank",
            row,
            "rank",
            "pure",
            "rank",
            "1 + #{v : P_L[v] > P_L[a]}",
            kind="int",
            optional=True,
        ),
        _m("kl_to_final_bits", row, "bits", "pure", "divergence", "KL(P_L || P_final)"),
        _m("teacher_entropy_bits", row, "bits", "pure", "entropy", "H(P_final)"),
        _m(
            "cos_to_final",
            row,
            "cosine",
            "pure",
            "prob",
            "cos(z_L - b, z_final - b), b the unembedding bias",
        ),
        _m(
            "answer_logit_gap",
            row,
            "logit",
            "pure",
            "logit",
            "z_L[a] - the second-largest z_L, when a is top-1 (else empty)",
            optional=True,
        ),
        _m(
            "answer_vs_top1_gap",
            row,
            "logit",
            "pure",
            "logit",
            "z_L[a] - max z_L, when answer_rank > 1 (else empty)",
            optional=True,
        ),
        _m(
            "resid_norm_ratio",
            row,
            "ratio",
            "pure",
            "prob",
            "||n|| / ||r||, r the residual, n what the lens unembeds (its norm, gamma included)",
        ),
        _m("delta_resid_cos", row, "cosine", "pure", "prob", "cos(r, n)"),
        _m(
            f"topk_jaccard_raw_norm@{JACCARD_K}",
            row,
            "jaccard",
            "pure",
            "set",
            "Jaccard of the top-50 id sets of the norm lens and the raw lens",
            raw=True,
        ),
        _m(
            f"topk_jaccard_consecutive@{JACCARD_K}",
            row,
            "jaccard",
            "pure",
            "set",
            "Jaccard of the norm lens' top-50 sets of layers L-1 and L (empty at layer 0)",
            optional=True,
        ),
    ]
    out += [
        _m(
            f"copy_strict@{tau}",
            row,
            "bool",
            "pure",
            "exact",
            f"top-1 among the prompt's ids, p1 > {tau}, p1 - p2 > copy_margin, not "
            "whitespace or punctuation only (False below collapse_from_layer)",
            kind="bool",
        )
        for tau in COPY_STRICT_TAUS
    ]
    out += [
        _m(
            f"copy_soft_k{k}@{COPY_SOFT_TAU}",
            row,
            "bool",
            "pure",
            "exact",
            f"the last {k} layers' top-1 ids are a contiguous run of the prompt's ids and "
            f"p1 > {COPY_SOFT_TAU} (every layer of the window >= collapse_from_layer)",
            kind="bool",
        )
        for k in COPY_SOFT_KS
    ]
    out.append(
        _m(
            "control_margin",
            row,
            "probability",
            "pure",
            "prob",
            "P_L[a] - P_L[a_c], a_c the first id of the answer of the prompt this one is "
            "the control of (control_for); only a control prompt's CSV has the column",
            optional=True,
        )
    )
    return tuple(out)


def _rawlens() -> tuple[Metric, ...]:
    row: Scope = "next-token row"
    out = [_m("layer", row, "index", "rawlens", "exact", "lens layer", kind="int")]
    for side, what in (("raw", "the raw lens (un-normalized residual)"), ("norm", "the lens")):
        out += [
            _m(
                f"p_top1_{side}",
                row,
                "probability",
                "rawlens",
                "prob",
                f"max P of {what}",
                raw=side == "raw",
            ),
            _m(
                f"top1_token_id_{side}",
                row,
                "id",
                "rawlens",
                "exact",
                f"top-1 id of {what}",
                kind="int",
                raw=side == "raw",
            ),
            _m(
                f"top1_token_str_{side}",
                row,
                "text",
                "rawlens",
                "exact",
                "that id decoded alone",
                kind="str",
                raw=side == "raw",
            ),
            _m(
                f"p_answer_{side}",
                row,
                "probability",
                "rawlens",
                "prob",
                f"P[a] of {what}",
                optional=True,
                raw=side == "raw",
            ),
            _m(
                f"answer_rank_{side}",
                row,
                "rank",
                "rawlens",
                "rank",
                f"a's rank under {what}",
                kind="int",
                optional=True,
                raw=side == "raw",
            ),
        ]
    out += [
        _m(
            "kl_norm_vs_raw_bits",
            row,
            "bits",
            "rawlens",
            "divergence",
            "KL(P_norm || P_raw)",
            raw=True,
        ),
        _m(
            "kl_raw_to_norm_bits",
            row,
            "bits",
            "rawlens",
            "divergence",
            "KL(P_raw || P_norm)",
            raw=True,
        ),
        _m(
            "js_divergence",
            row,
            "bits",
            "rawlens",
            "divergence",
            "JS(P_norm, P_raw), the mixture renormalized",
            raw=True,
        ),
        _m("entropy_bits_norm", row, "bits", "rawlens", "entropy", "H(P_norm)"),
        _m("entropy_bits_raw", row, "bits", "rawlens", "entropy", "H(P_raw)", raw=True),
        _m(
            "entropy_gap_bits",
            row,
            "bits",
            "rawlens",
            "entropy",
            "entropy_bits_norm - teacher_entropy_bits",
        ),
        _m("l1_prob_diff", row, "probability", "rawlens", "prob", "sum |P_norm - P_raw|", raw=True),
        _m(
            f"topk_jaccard_raw_norm@{JACCARD_K}",
            row,
            "jaccard",
            "rawlens",
            "set",
            "as in the pure CSV",
            raw=True,
        ),
        _m(
            f"topk_jaccard_consecutive@{JACCARD_K}",
            row,
            "jaccard",
            "rawlens",
            "set",
            "as in the pure CSV",
            optional=True,
        ),
        _m(
            "norm_only_semantics",
            row,
            "bool",
            "rawlens",
            "exact",
            "answer_rank_norm = 1 and answer_rank_raw != 1",
            kind="bool",
        ),
    ]
    return tuple(out)


#: The milestones CSV's columns: one row per milestone (``k``: the soft copy's window).
MILESTONES_COLUMNS = ("milestone", "layer", "k")


def _milestones() -> tuple[Metric, ...]:
    p: Scope = "prompt"

    def ms(name: str, definition: str) -> Metric:
        return _m(
            name,
            p,
            "layer",
            "milestones",
            "exact",
            definition,
            json_key=f"diagnostics.milestones.{name}",
            kind="int",
            optional=True,
        )

    out = [ms(f"first_rank_le_{r}", f"first layer whose answer_rank <= {r}") for r in (1, 5, 10)]
    out += [
        ms(f"first_kl_below_{b}", f"first layer whose kl_to_final_bits < {b}") for b in (1.0, 0.5)
    ]
    out += [
        ms(f"L_copy_strict@{tau}", f"first layer whose copy_strict@{tau} is true")
        for tau in COPY_STRICT_TAUS
    ]
    out.append(ms("L_copy_soft", "first layer where a copy_soft_kK@0.5 is true (any K)"))
    out.append(
        _m(
            "L_copy_soft_k",
            p,
            "window",
            "milestones",
            "exact",
            "the smallest K whose copy_soft_kK@0.5 is true at L_copy_soft (the row's k)",
            column="L_copy_soft",
            json_key="diagnostics.milestones.L_copy_soft_k",
            kind="int",
            optional=True,
        )
    )
    return tuple(out)


def _raw_summary() -> tuple[Metric, ...]:
    p: Scope = "prompt"
    key = "diagnostics.raw_lens_summary."
    return (
        _m(
            "max_kl_norm_vs_raw_bits",
            p,
            "bits",
            "json",
            "divergence",
            "the largest kl_norm_vs_raw_bits over the layers",
            column=None,
            json_key=key + "max_kl_norm_vs_raw_bits",
            raw=True,
        ),
        _m(
            "max_kl_norm_vs_raw_layer",
            p,
            "layer",
            "json",
            "exact",
            "the layer of that maximum",
            column=None,
            json_key=key + "max_kl_norm_vs_raw_layer",
            kind="int",
        ),
        _m(
            "first_norm_only_semantics_layer",
            p,
            "layer",
            "json",
            "exact",
            "first layer whose norm_only_semantics is true",
            column=None,
            json_key=key + "first_norm_only_semantics_layer",
            kind="int",
            optional=True,
        ),
        _m(
            "n_norm_only_semantics",
            p,
            "count",
            "json",
            "exact",
            "layers whose norm_only_semantics is true",
            column=None,
            json_key=key + "n_norm_only_semantics",
            kind="int",
        ),
        _m(
            "mean_topk_jaccard_raw_norm",
            p,
            "jaccard",
            "json",
            "set",
            "mean of topk_jaccard_raw_norm@50 over the layers",
            column=None,
            json_key=key + "mean_topk_jaccard_raw_norm",
            raw=True,
        ),
    )


#: Where a control prompt's summary is in the JSON (absent on other prompts).
CONTROL_SUMMARY_KEY = "diagnostics.control_summary."


def _control_summary() -> tuple[Metric, ...]:
    p: Scope = "prompt"
    key = CONTROL_SUMMARY_KEY

    def cs(name: str, unit: str, tol: str, definition: str, kind: Kind, opt: bool) -> Metric:
        return _m(
            name,
            p,
            unit,
            "json",
            tol,
            definition,
            column=None,
            json_key=key + name,
            kind=kind,
            optional=opt,
        )

    return (
        cs("control_for", "id", "exact", "the id of the prompt this one controls", "str", False),
        cs(
            "first_positive_margin_layer",
            "layer",
            "exact",
            "first layer whose control_margin > 0",
            "int",
            True,
        ),
        cs(
            "max_control_margin",
            "probability",
            "prob",
            "the largest control_margin over the layers",
            "float",
            True,
        ),
        cs(
            "max_control_margin_layer",
            "layer",
            "exact",
            "the (first) layer of that maximum",
            "int",
            True,
        ),
    )


#: Every declaration, today's first.
METRICS: tuple[Metric, ...] = (
    _ORIGINAL + _pure_extended() + _rawlens() + _milestones() + _raw_summary() + _control_summary()
)


def declared(file: FileKind, schema: str | None = None) -> tuple[Metric, ...]:
    """The declarations of one file (and schema), in column order."""
    return tuple(m for m in METRICS if m.file == file and (schema is None or m.schema == schema))


def grid_metrics(schema: str = "original") -> tuple[Metric, ...]:
    """The records columns a golden pins as values of their own, per cell of the records
    grid and per row of the next-token trajectory (today: ``entropy``); the top-k pairs,
    the coordinates and ``rest_mass`` are pinned as their ``golden`` field says."""
    return tuple(m for m in declared("records", schema) if m.golden == "value")


def columns(file: FileKind, schema: str = "extended") -> tuple[str, ...]:
    """The columns a file of ``file``'s kind gains under ``schema`` (the pure CSV: after
    its flags; a sidecar: its whole header)."""
    if file == "milestones":
        return MILESTONES_COLUMNS
    return tuple(str(m.column) for m in declared(file, schema))


def metric(file: FileKind, column: str) -> Metric:
    """The declaration of one column (``L_copy_soft`` in the milestones CSV: its layer)."""
    for m in METRICS:
        if m.file == file and m.column == column:
            return m
    raise KeyError(f"no metric declared for column {column!r} of the {file} file")


def class_tolerance(
    cls: str, tol: Tolerances, *, raw: bool = False, golden: float | None = None
) -> float:
    """How far a value of tolerance class ``cls`` may move under ``tol``, read at the raw
    lens when ``raw`` (whose golden value is ``golden``: a divergence's tolerance grows
    with it); 0: exact (ranks are resolved per value, lenscheck.golden.metrics)."""
    t = tol.for_point(RAW) if raw else tol
    if cls == "divergence":
        return max(t.entropy, t.divergence_rel * abs(golden or 0.0))
    return {
        "exact": 0.0,
        "rank": 0.0,
        "entropy": t.entropy,
        "prob": t.p_top1,
        "logit": t.logit_bound(),
        "set": t.jaccard_bound(),
    }[cls]


def class_cap(cls: str, tol: Tolerances) -> float:
    """Up to where a value of class ``cls`` beyond its tolerance may be an outlier (half
    precision against float32, Tolerances' allowance): entropies and probabilities."""
    return {"entropy": tol.entropy_cap, "prob": tol.p_cap}.get(cls, 0.0)


def tolerance_of(m: Metric, tol: Tolerances, golden: float | None = None) -> float:
    """How far a value of ``m`` whose golden value is ``golden`` may move under ``tol``
    (its class' tolerances, the raw point's where ``m`` reads the raw lens); 0: exact."""
    return class_tolerance(m.tolerance, tol, raw=m.raw, golden=golden)


def _pin_note(m: Metric) -> str:
    """How a golden pins ``m`` where that is not as a value of its own."""
    if m.golden == "index":
        return (
            ", as the tokenization's tokens" if m.kind == "str" else ", as the grid's coordinates"
        )
    return {"topk": ", as the top-k pairs", "derived": ", derived from the pairs"}.get(m.golden, "")


def markdown_table(metrics: Iterable[Metric]) -> str:
    """The docs' table of ``metrics``: column, scope, unit, tolerance class (``(raw)``:
    the raw point's; how a golden pins it where that is not as a value of its own),
    definition."""
    lines = ["| column | scope | unit | golden tolerance | definition |", "|---|---|---|---|---|"]
    for m in metrics:
        where = f"`{m.column}`" if m.column else f"`{m.json_key}`"
        empty = " (may be empty)" if m.optional else ""
        tol = f"{m.tolerance} (raw)" if m.raw else m.tolerance
        tol += _pin_note(m)
        lines.append(f"| {where} | {m.scope} | {m.unit} | {tol} | {m.definition}{empty} |")
    return "\n".join(lines)
