"""The drift report a researcher reads: what moved, where first, how much, how to re-bless.

Per section: how many of how many compared values drifted, the largest |delta|, and the
first divergence by prompt, layer, position and metric; then the first drifts one per
line, a per-layer table around the first divergence, the versions then and now, and the
exact command that re-blesses. Plain text for terminals, markdown for CI job summaries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lenscheck.golden.compare import SECTIONS, Drift, DriftReport

__all__ = [
    "identity_problems",
    "rebless_command",
    "render_markdown",
    "render_report",
    "section_summaries",
]

_MAX_DRIFT_LINES = 12
_CONTEXT_LAYERS = 3
_CELL = 14


def rebless_command(model: str, flags: Sequence[str] = ()) -> str:
    """The exact command that regenerates ``model``'s golden: ``flags`` are the plugin
    options that chose it (``--lens-dtype=bfloat16``...), quoted for a POSIX shell."""
    from lenscheck.options import shell_command

    return shell_command(["pytest", f"--lens-models={model}", *flags, "--snapshot-update"])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _drift_line(d: Drift, old: str = "golden", new: str = "observed") -> str:
    where = f"{d.where} " if d.where else ""
    delta = f" |Δ| {d.delta:.3g}" if d.delta is not None else ""
    tol = (
        f" > tol {d.tolerance:g}"
        if isinstance(d.tolerance, (int, float)) and d.delta is not None
        else ""
    )
    values = f"{old} {_fmt(d.golden)} vs {new} {_fmt(d.observed)}"
    return f"{d.section}: {where}{d.metric}: {values}{delta}{tol}"


def section_summaries(report: DriftReport, sections: Sequence[str] = SECTIONS) -> list[str]:
    """``records: 3 of 527 values drifted, max |Δ| 0.012 (entropy, prompt x layer 4 pos 7)``."""
    lines = []
    for name in sections:
        drifts = report.section(name)
        if not drifts:
            continue
        total = max(report.compared[name], len(drifts))
        line = f"{name}: {len(drifts)} of {total} values drifted"
        numeric = [d for d in drifts if d.delta is not None]
        if numeric:
            worst = max(numeric, key=lambda d: d.delta or 0.0)
            at = f", {worst.where}" if worst.where else ""
            line += f", max |Δ| {worst.delta:.3g} ({worst.metric}{at})"
        first = report.first_divergence(drifts)
        if first is not None:
            line += f"; first: {first.where + ' ' if first.where else ''}{first.metric}"
        lines.append(line)
    return lines


def identity_problems(
    report: DriftReport, old: str = "golden", new: str = "run", *, rebless: bool = True
) -> list[str]:
    """Prompts whose text changed or that have no golden entry (re-bless, not drift).

    A changed prompt says which of its prompt, answer and probes changed, then shows each
    one's text on both sides (``old``, the golden, first) on indented lines. ``rebless``:
    advise --snapshot-update (not for ``lenscheck diff``, where no golden is involved).
    """
    lines: list[str] = []
    for pid in report.changed_prompts:
        g = report.golden.get("prompts", {}).get(pid, {})
        o = report.observed.get("prompts", {}).get(pid, {})
        shown = _changed_texts(g, o)
        what = (
            f"{_and([field for field, _, _ in shown])} "
            f"{'differs' if len(shown) == 1 else 'differ'} from the {old}'s"
            if shown
            else f"its hash differs from the {old}'s (prompt, answer and probes read the same)"
        )
        advice = ", re-bless with --snapshot-update" if rebless else ""
        lines.append(f"prompt {pid!r} changed: {what}; its values are not compared{advice}")
        width = max(
            (len(f"{field} {side}:") for field, _, _ in shown for side in (old, new)), default=0
        )
        for field, g_text, o_text in shown:
            lines.append(f"    {f'{field} {old}:'.ljust(width)} {g_text}")
            lines.append(f"    {f'{field} {new}:'.ljust(width)} {o_text}")
    lines += [f"prompt {pid!r} has no golden entry" for pid in report.missing_prompts]
    return lines


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


#: How much of a changed prompt's text a report shows per side.
_EXCERPT = 96


def _changed_texts(g: Mapping[str, Any], o: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(field, golden side, run side) for each of prompt, answer and probes that differ,
    ready to print: texts quoted and cut around their first difference; probes as the
    first probe that differs (``probe #n``), else the two probe counts."""
    shown = [
        (key, *_excerpts(str(g[key]), str(o[key])))
        for key in ("prompt", "answer")
        if key in g and key in o and g[key] != o[key]
    ]
    g_probes = list((g.get("probes") or {}).get("prompt", []))
    o_probes = list((o.get("probes") or {}).get("prompt", []))
    at = next((i for i, (a, b) in enumerate(zip(g_probes, o_probes)) if a != b), None)
    if at is not None:
        shown.append((f"probe #{at + 1}", *_excerpts(g_probes[at], o_probes[at])))
    elif len(g_probes) != len(o_probes):
        shown.append(("probes", f"{len(g_probes)} probes", f"{len(o_probes)} probes"))
    return shown


def _excerpts(a: str, b: str, width: int = _EXCERPT) -> tuple[str, str]:
    """Both texts quoted, cut to ``width`` characters around their first difference."""
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    # From the start when the difference shows there, else from a third of a width before it.
    start = 0 if first < width * 2 // 3 else first - width // 3

    def cut(text: str) -> str:
        part = text[start : start + width]
        return ("…" if start else "") + repr(part) + ("…" if start + width < len(text) else "")

    return cut(a), cut(b)


def _cell(text: Any) -> str:
    s = _fmt(text)
    return s[: _CELL - 1] + "…" if len(s) > _CELL else s.ljust(_CELL)


def _table(report: DriftReport, first: Drift, old: str, new: str) -> list[str]:
    """Next-token rows of the first divergence's prompt around its layer: top-1, entropy,
    p(top-1) and, when the drift is in an extended column, that column."""
    if first.prompt is None or first.layer is None:
        return []
    g_prompts, o_prompts = report.golden.get("prompts", {}), report.observed.get("prompts", {})
    o = o_prompts.get(first.prompt)
    g = g_prompts.get(first.prompt) or next(
        (e for e in g_prompts.values() if o is not None and e["sha256"] == o["sha256"]), None
    )
    if g is None or o is None:
        return []
    columns = [(name, g["next_token"][key], o["next_token"][key]) for name, key in _VIEWED]
    extra = _metric_column(first, g, o)
    title = f"next-token rows of prompt {first.prompt}"
    if extra is not None:  # its name is too long for a cell: M stands for it
        title += f", M = {extra[0]}"
        columns.append(("M", extra[1], extra[2]))
    bad = {d.layer for d in report.drifts if d.layer is not None and d.prompt == first.prompt}
    head = ["layer"] + [f"{name} {side}" for name, _, _ in columns for side in (old, new)]
    lines = [
        f"{title}:",
        "   " + " ".join(h.ljust(_CELL) for h in head),
    ]
    n = min(min(len(gv), len(ov)) for _, gv, ov in columns)
    for layer in range(
        max(0, first.layer - _CONTEXT_LAYERS), min(n, first.layer + _CONTEXT_LAYERS + 1)
    ):
        mark = ">> " if layer in bad else "   "
        cells = [layer] + [v[layer] for _, gv, ov in columns for v in (gv, ov)]
        lines.append(mark + " ".join(_cell(c) for c in cells))
    return lines


#: The next-token values every context table shows: (header, golden key).
_VIEWED = (("top1", "top1"), ("H", "entropy"), ("p1", "p_top1"))


def _metric_column(
    first: Drift, g: Mapping[str, Any], o: Mapping[str, Any]
) -> tuple[str, list[Any], list[Any]] | None:
    """The extended column the first divergence is in (``next_token kl_to_final_bits``,
    ``rawlens p_top1_raw``), both sides' values per layer; None for any other drift."""
    if first.section != "metrics":
        return None
    part, _, column = first.metric.partition(" ")
    g_part = ((g.get("metrics") or {}).get(part)) or {}
    o_part = ((o.get("metrics") or {}).get(part)) or {}
    gv, ov = g_part.get(column), o_part.get(column)
    if not isinstance(gv, list) or not isinstance(ov, list):
        return None
    return column, gv, ov


def _versions(env: Mapping[str, Any]) -> str:
    keys = ("lenscheck", "torch", "transformers", "transformer-lens", "device", "dtype", "backend")
    return ", ".join(f"{k} {env[k]}" for k in keys if k in env)


def _title(report: DriftReport, golden_path: str, old: str, new: str) -> str:
    """``lenscheck drift: MODEL, suite S: golden CLASS (PATH) vs run CLASS``: old side first."""
    suite = report.observed.get("suite") or report.golden.get("suite")
    suite_part = f", suite {suite}" if suite else ""
    where = f" ({golden_path})" if golden_path else ""
    return (
        f"lenscheck drift: {report.model}{suite_part}: {old} {report.golden_class}{where} "
        f"vs {new} {report.run_class}"
    )


def render_report(
    report: DriftReport,
    *,
    golden_path: str = "",
    old: str = "golden",
    new: str = "run",
    rebless: str | None = None,
    sections: Sequence[str] = SECTIONS,
    limit: int | None = _MAX_DRIFT_LINES,
) -> str:
    """A bounded, plain-text drift report of ``sections`` for one model.

    ``old``/``new`` name the two sides (``lenscheck diff`` says OLD and NEW); ``rebless``
    is the command that regenerates the golden (None: not shown); ``limit``: how many
    drifts and near-ties are listed one per line (None: every one, ``--lens-details``).
    """
    drifts = [d for d in report.drifts if d.section in sections]
    lines = [_title(report, golden_path, old, new), f"  compared with {report.tolerance_note}"]
    problems = identity_problems(report, old, new, rebless=rebless is not None)
    lines += [f"  {line}" for line in problems]
    first = report.first_divergence(drifts)
    if first is None:
        lines.append("  no drift beyond tolerance")
    else:
        lines.append(f"  {len(drifts)} drift(s); first: {_drift_line(first, old, new)}")
        lines += [f"  {line}" for line in section_summaries(report, sections)]
        lines += ["  " + _drift_line(d, old, new) for d in drifts[:limit]]
        if limit is not None and len(drifts) > limit:
            lines.append(
                f"  ... and {len(drifts) - limit} more (every one: --lens-details, ini "
                "lens_details = true)"
            )
        lines += ["  " + row for row in _table(report, first, old, new)]
    ties = [t for t in report.near_ties if t.section in sections]
    for tie in ties[:limit]:
        lines.append(f"  near-tie (not a failure): {_drift_line(tie, old, new)}")
    if report.removed_prompts:
        lines.append(
            f"  not in this run (the golden has them): {', '.join(report.removed_prompts)}"
        )
    lines.append(f"  versions {old}: {_versions(report.golden.get('environment', {}))}")
    lines.append(f"  versions {new}: {_versions(report.observed.get('environment', {}))}")
    if rebless:
        lines.append(f"  if this change is intended, re-bless: {rebless}")
    return "\n".join(lines)


def _md(value: Any, *, quote: bool = True) -> str:
    """A markdown table cell: values as the text report shows them, names as they are."""
    text = _fmt(value) if quote or not isinstance(value, str) else value
    return text.replace("|", "\\|")


def render_markdown(reports: Sequence[DriftReport], *, old: str = "OLD", new: str = "NEW") -> str:
    """The reports as a markdown summary (GitHub job summaries): one table row per model,
    then the drifts of each drifting model as a table."""
    lines = [
        "## lenscheck drift report",
        "",
        "| model | classes | result | drifted values | first divergence |",
        "|---|---|---|---|---|",
    ]
    for r in reports:
        first = r.first_divergence()
        result = "ok" if r.ok and r.identity_ok else "**drift**"
        where = "" if first is None else f"{first.section}: {first.where} {first.metric}".strip()
        classes = f"{r.golden_class} → {r.run_class}"
        lines.append(
            f"| {_md(r.model, quote=False)} | {classes} | {result} | {len(r.drifts)} | "
            f"{_md(where, quote=False)} |"
        )
    for r in reports:
        if r.ok and r.identity_ok:
            continue
        lines += ["", f"### {_md(r.model, quote=False)}", "", f"compared with {r.tolerance_note}"]
        lines += [""] + [
            f"{'  ' if line.startswith('    ') else ''}- {_md(line.strip(), quote=False)}"
            for line in identity_problems(r, old, new, rebless=False) + section_summaries(r)
        ]
        if r.drifts:
            lines += [
                "",
                f"| section | where | metric | {old} | {new} | \\|Δ\\| | tol |",
                "|---|---|---|---|---|---|---|",
            ]
            for d in r.drifts[:50]:
                delta = "" if d.delta is None else f"{d.delta:.3g}"
                lines.append(
                    f"| {d.section} | {_md(d.where, quote=False)} | {_md(d.metric, quote=False)} "
                    f"| {_md(d.golden)} | {_md(d.observed)} | {delta} | {_md(d.tolerance)} |"
                )
            if len(r.drifts) > 50:
                lines.append(f"\n... and {len(r.drifts) - 50} more")
    return "\n".join(lines) + "\n"
