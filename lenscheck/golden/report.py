"""The drift report a researcher reads: what moved, where first, by how much, how to re-bless."""

from __future__ import annotations

from collections import Counter
from typing import Any

from lenscheck.golden.compare import Drift, DriftReport

__all__ = ["rebless_command", "render_report"]

_MAX_DRIFT_LINES = 12
_CONTEXT_LAYERS = 3
_CELL = 14


def rebless_command(model: str) -> str:
    """The exact command that regenerates ``model``'s golden."""
    return f"pytest --lens-models={model} --snapshot-update"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _drift_line(d: Drift, old: str = "golden", new: str = "observed") -> str:
    where = f"layer {d.layer} " if d.layer is not None else ""
    delta = f" |Δ| {d.delta:.3g}" if d.delta is not None else ""
    tol = (
        f" > tol {d.tolerance:g}"
        if isinstance(d.tolerance, (int, float)) and d.delta is not None
        else ""
    )
    values = f"{old} {_fmt(d.golden)} vs {new} {_fmt(d.observed)}"
    return f"{d.section}: {where}{d.metric}: {values}{delta}{tol}"


def _cell(text: Any) -> str:
    s = _fmt(text)
    return s[: _CELL - 1] + "…" if len(s) > _CELL else s.ljust(_CELL)


def _table(report: DriftReport, center: int, old: str, new: str) -> list[str]:
    golden = {r["layer"]: r for r in report.golden.get("trajectory", [])}
    observed = {r["layer"]: r for r in report.observed.get("trajectory", [])}
    bad = {d.layer for d in report.drifts if d.layer is not None}
    head = ("layer", f"top1 {old}", f"top1 {new}", f"H {old}", f"H {new}", f"p1 {old}", f"p1 {new}")
    lines = ["   " + " ".join(h.ljust(_CELL) for h in head)]
    for layer in range(center - _CONTEXT_LAYERS, center + _CONTEXT_LAYERS + 1):
        if layer not in golden or layer not in observed:
            continue
        g, o = golden[layer], observed[layer]
        mark = ">> " if layer in bad else "   "
        cells = (layer, g["top1"], o["top1"], g["entropy"], o["entropy"], g["p_top1"], o["p_top1"])
        lines.append(mark + " ".join(_cell(c) for c in cells))
    return lines


def _versions(env: dict[str, Any]) -> str:
    keys = ("lenscheck", "torch", "transformers", "transformer-lens", "device", "dtype", "backend")
    return ", ".join(f"{k} {env[k]}" for k in keys if k in env)


def render_report(
    report: DriftReport,
    *,
    golden_path: str = "",
    old: str = "golden",
    new: str = "run",
    rebless: bool = True,
) -> str:
    """A bounded, plain-text drift report for one model.

    ``old``/``new`` name the two sides (``lenscheck diff`` says OLD and NEW);
    ``rebless`` adds the command that regenerates the golden.
    """
    lines = [
        f"lenscheck drift: {report.model} ({report.run_class} {new} vs {report.golden_class} {old}"
        f"{' ' + golden_path if golden_path else ''})",
        f"  compared with {report.tolerance_note}",
    ]
    first = report.first_divergence()
    if first is None:
        lines.append("  no drift beyond tolerance")
    else:
        counts = Counter(d.section for d in report.drifts)
        summary = ", ".join(f"{name} {n}" for name, n in counts.items())
        first_line = _drift_line(first, old, new)
        lines.append(f"  {len(report.drifts)} drift(s) ({summary}); first: {first_line}")
        deltas = [d for d in report.drifts if d.delta is not None and d.layer is not None]
        if deltas:
            worst = max(deltas, key=lambda d: d.delta or 0.0)
            lines.append(f"  max |Δ| {worst.delta:.3g} ({worst.metric}, layer {worst.layer})")
        lines += ["  " + _drift_line(d, old, new) for d in report.drifts[:_MAX_DRIFT_LINES]]
        if len(report.drifts) > _MAX_DRIFT_LINES:
            lines.append(f"  ... and {len(report.drifts) - _MAX_DRIFT_LINES} more")
        if first.layer is not None:
            lines += ["  " + row for row in _table(report, first.layer, old, new)]
    for tie in report.near_ties[:_MAX_DRIFT_LINES]:
        lines.append(f"  near-tie (not a failure): {_drift_line(tie, old, new)}")
    lines.append(f"  versions {old}: {_versions(report.golden.get('environment', {}))}")
    lines.append(f"  versions {new}: {_versions(report.observed.get('environment', {}))}")
    if rebless:
        lines.append(f"  if this change is intended, re-bless: {rebless_command(report.model)}")
    return "\n".join(lines)
