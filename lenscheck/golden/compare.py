"""Compare a run's golden payload with a stored golden, metric by metric."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lenscheck.golden.tolerances import Tolerances

__all__ = ["Drift", "DriftReport", "compare_golden"]

SECTIONS = ("schema", "model_stats", "tokenization", "collapse", "final_prediction", "trajectory")
_ENVIRONMENT_KEYS = ("diagnostics.versions.",)


@dataclass(frozen=True)
class Drift:
    """One metric out of tolerance (``layer`` is None outside the trajectory)."""

    section: str
    metric: str
    golden: Any
    observed: Any
    tolerance: Any = 0
    layer: int | None = None

    @property
    def delta(self) -> float | None:
        """|observed - golden| for numbers, else None."""
        if isinstance(self.golden, (int, float)) and isinstance(self.observed, (int, float)):
            return abs(float(self.observed) - float(self.golden))
        return None


@dataclass
class DriftReport:
    """Every drift and near-tie found, plus the context the report prints."""

    model: str
    golden_class: str
    run_class: str
    tolerance_note: str
    drifts: list[Drift] = field(default_factory=list)
    near_ties: list[Drift] = field(default_factory=list)
    golden: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No drift beyond tolerance (near-ties do not count)."""
        return not self.drifts

    def section(self, name: str) -> list[Drift]:
        """The drifts of one section."""
        return [d for d in self.drifts if d.section == name]

    def first_divergence(self) -> Drift | None:
        """The trajectory drift at the lowest layer, else the first drift."""
        layered = [d for d in self.drifts if d.layer is not None]
        if layered:
            return min(layered, key=lambda d: (d.layer, d.metric))
        return self.drifts[0] if self.drifts else None


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


def _equal(
    out: list[Drift],
    section: str,
    golden: dict[str, Any],
    observed: dict[str, Any],
    *,
    lenient: bool,
) -> None:
    for key in sorted(set(golden) | set(observed)):
        g, o = golden.get(key), observed.get(key)
        if g == o or (lenient and (g is None or o is None)):
            continue
        if key != "json_keys":
            out.append(Drift(section, key, g, o))
            continue
        g_paths, o_paths = _key_paths(g), _key_paths(o)
        for path in sorted(set(g_paths) | set(o_paths)):
            if lenient and path not in g_paths:
                continue  # new diagnostics are added, never renamed: not a drift for diff
            if path.startswith(_ENVIRONMENT_KEYS):
                # The installed libraries depend on the backend (transformer-lens adds its
                # own): environment, not schema; the "versions" report lines show them.
                continue
            if g_paths.get(path) != o_paths.get(path):
                out.append(
                    Drift(
                        section,
                        f"json key {path}",
                        g_paths.get(path, "absent"),
                        o_paths.get(path, "absent"),
                    )
                )


def _collapse(
    out: list[Drift], golden: dict[str, Any], observed: dict[str, Any], allowance: int
) -> None:
    for key in ("L_copy", "L_copy_H", "L_semantic", "delta_layers"):
        g, o = golden.get(key), observed.get(key)
        if g is None or o is None:
            if g != o:
                out.append(Drift("collapse", key, g, o, allowance))
        elif abs(o - g) > allowance:
            out.append(Drift("collapse", key, g, o, allowance))


def _close(
    out: list[Drift],
    section: str,
    metric: str,
    g: float,
    o: float,
    tol: float,
    layer: int | None = None,
) -> None:
    if not abs(o - g) <= tol:
        out.append(Drift(section, metric, g, o, tol, layer))


def _final(
    out: list[Drift], golden: dict[str, Any], observed: dict[str, Any], tol: Tolerances
) -> None:
    _close(out, "final_prediction", "entropy", golden["entropy"], observed["entropy"], tol.entropy)
    g_top, o_top = golden["top5"], observed["top5"]
    if [t for t, _ in g_top] != [t for t, _ in o_top]:
        out.append(
            Drift("final_prediction", "top5 tokens", [t for t, _ in g_top], [t for t, _ in o_top])
        )
        return
    for rank, ((tok, gp), (_, op)) in enumerate(zip(g_top, o_top), start=1):
        _close(out, "final_prediction", f"p(top{rank} {tok!r})", gp, op, tol.final_prob)


def _trajectory(
    report: DriftReport,
    golden: list[dict[str, Any]],
    observed: list[dict[str, Any]],
    tol: Tolerances,
) -> None:
    if len(golden) != len(observed):
        report.drifts.append(Drift("trajectory", "layer count", len(golden), len(observed)))
        return
    for g, o in zip(golden, observed):
        layer = g["layer"]
        if o["layer"] != layer:
            # Rows are compared by position: a shifted layer numbering is drift in itself.
            report.drifts.append(Drift("trajectory", "layer index", layer, o["layer"], 0, layer))
        if g["top1"] != o["top1"]:
            gap = g["p_top1"] - g["p_top2"]
            target = report.near_ties if gap < tol.near_tie else report.drifts
            target.append(Drift("trajectory", "top1", g["top1"], o["top1"], tol.near_tie, layer))
        _close(
            report.drifts, "trajectory", "entropy", g["entropy"], o["entropy"], tol.entropy, layer
        )
        _close(report.drifts, "trajectory", "p_top1", g["p_top1"], o["p_top1"], tol.p_top1, layer)


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
    out = report.drifts
    for name in ("schema", "model_stats", "tokenization"):
        if name in sections:
            _equal(out, name, golden[name], observed[name], lenient=lenient)
    if "collapse" in sections:
        _collapse(out, golden["collapse"], observed["collapse"], collapse_allowance)
    if "final_prediction" in sections:
        _final(out, golden["final_prediction"], observed["final_prediction"], tol)
    if "trajectory" in sections:
        _trajectory(report, golden["trajectory"], observed["trajectory"], tol)
    return report
