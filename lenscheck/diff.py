"""``lenscheck diff``: compare two runs (folders or files) or a run against a golden.

Both sides become golden documents (see :mod:`lenscheck.golden.payload`) and go
through the same comparison and drift report as the pytest plugin. Files written by
the original pipeline read the same way; what they lack (tokenization ids, newer
diagnostics) is treated as unknown rather than as drift.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lenscheck.golden.compare import SECTIONS, DriftReport, compare_golden
from lenscheck.golden.payload import FORMAT_VERSION, golden_class, json_key_tree
from lenscheck.golden.report import render_report
from lenscheck.golden.store import GoldenFormatError, loads_golden
from lenscheck.golden.tolerances import tolerances_for
from lenscheck.schema import CSV_DIALECT, read_csv

__all__ = [
    "DiffInputError",
    "RunFiles",
    "diff_paths",
    "load_side",
    "payload_from_files",
    "reports_json",
]

_PURE_SUFFIX = "-pure-next-token.csv"
_RECORDS_SUFFIX = "-records.csv"


class DiffInputError(ValueError):
    """An input that cannot be read as a run folder, run file or golden."""


@dataclass(frozen=True)
class RunFiles:
    """One model's output files in a run folder."""

    name: str
    json: Path
    pure_csv: Path
    records_csv: Path | None


def _group(json_path: Path) -> RunFiles:
    name = json_path.name[len("output-") : -len(".json")]
    pure = json_path.with_name(f"output-{name}{_PURE_SUFFIX}")
    records = json_path.with_name(f"output-{name}{_RECORDS_SUFFIX}")
    if not pure.exists():
        raise DiffInputError(f"{json_path}: expected its pure next-token CSV at {pure}, found none")
    return RunFiles(name, json_path, pure, records if records.exists() else None)


def _json_for(path: Path) -> Path:
    name = path.name
    for suffix in (_PURE_SUFFIX, _RECORDS_SUFFIX, ".json"):
        if name.startswith("output-") and name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    raise DiffInputError(
        f"{path}: expected a run folder, an output-<name>.json / -pure-next-token.csv / "
        "-records.csv file, or a golden JSON file"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DiffInputError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DiffInputError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def load_side(path: Path) -> dict[str, dict[str, Any]]:
    """Golden documents by model name for a folder, a run file or a golden file."""
    if not path.exists():
        raise DiffInputError(f"{path}: no such file or directory")
    if path.is_dir():
        jsons = sorted(path.glob("output-*.json"))
        if not jsons:
            goldens = sorted(path.glob("*.json"))
            if goldens:
                return {p.stem: _golden_doc(p) for p in goldens}
            raise DiffInputError(f"{path}: no output-*.json files (and no golden files) in it")
        return {g.name: payload_from_files(g) for g in map(_group, jsons)}
    if path.suffix == ".json" and "format_version" in _read_json(path):
        doc = _golden_doc(path)
        return {str(doc["model"]): doc}
    files = _group(_json_for(path))
    return {files.name: payload_from_files(files)}


def _golden_doc(path: Path) -> dict[str, Any]:
    try:
        return loads_golden(path.read_text(encoding="utf-8"), source=str(path))
    except GoldenFormatError as exc:
        raise DiffInputError(str(exc)) from None


def _header(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as fh:
        return ",".join(next(csv.reader(fh, dialect=CSV_DIALECT), []))


def _trajectory(pure_csv: Path) -> list[dict[str, Any]]:
    table = read_csv(pure_csv)
    rows = []
    for row in table.rows:
        (t1, p1), (_, p2) = row.topk[0], row.topk[1]
        rows.append(
            {"layer": row.layer, "top1": t1, "p_top1": p1, "p_top2": p2, "entropy": row.entropy}
        )
    return rows


def _tokens(records_csv: Path | None) -> list[str] | None:
    if records_csv is None:
        return None
    return [r.token for r in read_csv(records_csv).rows if r.layer == 0]


def payload_from_files(files: RunFiles) -> dict[str, Any]:
    """A golden document from a model's JSON and CSV files (ours or the original's)."""
    from lenscheck.golden.payload import _stable_json

    data = _read_json(files.json)
    try:
        diag = data["diagnostics"]
        dtype = str(diag.get("compute_dtype") or diag["unembed_dtype"])
        tokenization = diag.get("tokenization", {})
        final = data["final_prediction"]
        doc = {
            "format_version": FORMAT_VERSION,
            "model": files.name,
            "class": golden_class(str(diag["device"]), dtype),
            "environment": {
                **diag.get("versions", {}),
                "device": diag["device"],
                "dtype": dtype,
                "backend": diag.get("backend", "unknown (original pipeline)"),
            },
            "schema": {
                "records_header": _header(files.records_csv) if files.records_csv else None,
                "pure_header": _header(files.pure_csv),
                "csv_dialect": None,
                "json_keys": json_key_tree(_stable_json(data)),
            },
            "model_stats": {k: v for k, v in data["model_stats"].items() if k != "type"},
            "tokenization": {
                "prepend_bos": tokenization.get("prepend_bos"),
                "input_ids": tokenization.get("input_ids"),
                "tokens": _tokens(files.records_csv),
            },
            "collapse": {
                k: diag.get(k) for k in ("L_copy", "L_copy_H", "L_semantic", "delta_layers")
            },
            "final_prediction": {"entropy": final["entropy"], "top5": final["topk"][:5]},
            "trajectory": _trajectory(files.pure_csv),
        }
    except (KeyError, TypeError, IndexError) as exc:
        raise DiffInputError(
            f"{files.json}: not a lenscheck/original-pipeline output ({exc!r})"
        ) from None
    return doc


def diff_paths(
    old: Path,
    new: Path,
    *,
    overrides: dict[str, dict[str, float]] | None = None,
    sections: tuple[str, ...] = SECTIONS,
) -> list[DriftReport]:
    """One report per model present on either side; a missing side is a drift."""
    left, right = load_side(old), load_side(new)
    if len(left) == 1 and len(right) == 1 and set(left) != set(right):
        right = {next(iter(left)): next(iter(right.values()))}  # two single files: pair them
    reports = []
    for name in sorted(set(left) | set(right)):
        if name not in left or name not in right:
            side = "OLD" if name not in left else "NEW"
            report = DriftReport(
                model=name,
                golden_class="?",
                run_class="?",
                tolerance_note=f"{name} is missing from {side}",
            )
            from lenscheck.golden.compare import Drift

            report.drifts.append(Drift("files", "model present", name in left, name in right))
            reports.append(report)
            continue
        tol, note = tolerances_for(left[name]["class"], right[name]["class"], overrides)
        reports.append(
            compare_golden(
                left[name], right[name], tol, tolerance_note=note, sections=sections, lenient=True
            )
        )
    return reports


def reports_json(reports: list[DriftReport]) -> str:
    """Machine-readable form of the reports (``--format json``)."""

    def drift(d: Any) -> dict[str, Any]:
        return {**asdict(d), "delta": d.delta}

    out = {
        "ok": all(r.ok for r in reports),
        "models": [
            {
                "model": r.model,
                "golden_class": r.golden_class,
                "run_class": r.run_class,
                "tolerance_note": r.tolerance_note,
                "ok": r.ok,
                "drifts": [drift(d) for d in r.drifts],
                "near_ties": [drift(d) for d in r.near_ties],
            }
            for r in reports
        ],
    }
    return json.dumps(out, ensure_ascii=False, indent=2)


def render_all(reports: list[DriftReport]) -> str:
    """The text report of every model."""
    return "\n\n".join(render_report(r, old="OLD", new="NEW", rebless=False) for r in reports)
