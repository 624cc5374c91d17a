"""``lenscheck diff``: compare two runs (folders or files), a run against a golden, or two
goldens (a golden and the ``.obtained.json`` a drifting run wrote beside it).

Every side becomes golden documents (see :mod:`lenscheck.golden.payload`) built from the
file bytes exactly as the plugin builds them, and goes through the same comparison and
drift report. Files written by the original pipeline read the same way; what they lack
(tokenization ids, the decoding ablation, newer diagnostics) is unknown, not drift.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lenscheck.golden.compare import SECTIONS, Drift, DriftReport, compare_golden
from lenscheck.golden.later import is_later_layout, later_prompt_files
from lenscheck.golden.payload import PromptFiles, golden_payload, merge_key_trees
from lenscheck.golden.report import render_markdown, render_report
from lenscheck.golden.store import GoldenFormatError, loads_golden
from lenscheck.golden.tolerances import tolerances_between
from lenscheck.schema import CsvSchemaError
from lenscheck.vocab import OUTPUT_PREFIX, OUTPUT_SUFFIXES

__all__ = [
    "DiffInputError",
    "RunFiles",
    "diff_paths",
    "load_side",
    "payload_from_files",
    "render_all",
    "reports_json",
    "reports_markdown",
]

_PURE_SUFFIX = OUTPUT_SUFFIXES["pure"]
_RECORDS_SUFFIX = OUTPUT_SUFFIXES["records"]
_JSON_SUFFIX = OUTPUT_SUFFIXES["json"]


class DiffInputError(ValueError):
    """An input that cannot be read as a run folder, run file or golden."""


@dataclass(frozen=True)
class RunFiles:
    """One prompt's output files in a run folder (``name``: the part after ``output-``)."""

    name: str
    json: Path
    pure_csv: Path
    records_csv: Path | None
    #: The extended schema's sidecars, where the folder has them.
    rawlens_csv: Path | None = None
    milestones_csv: Path | None = None


def _group(json_path: Path) -> RunFiles:
    name = json_path.name[len(OUTPUT_PREFIX) : -len(_JSON_SUFFIX)]
    pure = json_path.with_name(f"{OUTPUT_PREFIX}{name}{_PURE_SUFFIX}")
    records = json_path.with_name(f"{OUTPUT_PREFIX}{name}{_RECORDS_SUFFIX}")
    if not pure.exists():
        raise DiffInputError(f"{json_path}: expected its pure next-token CSV at {pure}, found none")
    rawlens = json_path.with_name(f"{OUTPUT_PREFIX}{name}{OUTPUT_SUFFIXES['rawlens']}")
    milestones = json_path.with_name(f"{OUTPUT_PREFIX}{name}{OUTPUT_SUFFIXES['milestones']}")
    return RunFiles(
        name,
        json_path,
        pure,
        records if records.exists() else None,
        rawlens if rawlens.exists() else None,
        milestones if milestones.exists() else None,
    )


def _json_for(path: Path) -> Path:
    name = path.name
    sidecars = (OUTPUT_SUFFIXES["rawlens"], OUTPUT_SUFFIXES["milestones"])
    for suffix in (_PURE_SUFFIX, _RECORDS_SUFFIX, *sidecars, _JSON_SUFFIX):
        if name.startswith(OUTPUT_PREFIX) and name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + _JSON_SUFFIX)
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
    """Golden documents by name for a folder, a run file or a golden file."""
    if not path.exists():
        raise DiffInputError(f"{path}: no such file or directory")
    if path.is_dir():
        jsons = sorted(path.glob(f"{OUTPUT_PREFIX}*{_JSON_SUFFIX}"))
        if not jsons:
            goldens = sorted(path.glob("*.json"))
            if goldens:
                return {p.name[: -len(_JSON_SUFFIX)]: _golden_doc(p) for p in goldens}
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


def _parsed(files: RunFiles) -> dict[str, PromptFiles]:
    """Each prompt's parsed files: one for lenscheck's layout and the original's first, one
    per prompt key for the original's later layout (lenscheck.golden.later)."""
    pure = files.pure_csv.read_bytes()
    if is_later_layout(pure):
        return later_prompt_files(
            files.json.read_bytes(),
            None if files.records_csv is None else files.records_csv.read_bytes(),
            pure,
            None if files.rawlens_csv is None else files.rawlens_csv.read_bytes(),
            source=str(files.json.with_suffix("")),
        )
    return {
        files.name: PromptFiles.from_bytes(
            files.json.read_bytes(),
            None if files.records_csv is None else files.records_csv.read_bytes(),
            pure,
            source=str(files.json.with_suffix("")),
            sidecars=(
                None if files.rawlens_csv is None else files.rawlens_csv.read_bytes(),
                None if files.milestones_csv is None else files.milestones_csv.read_bytes(),
            ),
        )
    }


def payload_from_files(files: RunFiles) -> dict[str, Any]:
    """A golden document of one run's files (ours or the original's): one prompt, or every
    prompt of an original later-layout set."""
    try:
        return golden_payload(_parsed(files), model=files.name, suite="")
    except (CsvSchemaError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DiffInputError(f"{files.json}: unreadable ({exc})") from None
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise DiffInputError(
            f"{files.json}: not a lenscheck/original-pipeline output ({exc!r})"
        ) from None


def _merged(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A folder of one model's per-prompt files as one document with every prompt."""
    first = dict(next(iter(docs.values())))
    first["prompts"] = {pid: e for d in docs.values() for pid, e in d["prompts"].items()}
    keys = merge_key_trees(d["schema"]["json_keys"] for d in docs.values())
    first["schema"] = {**first["schema"], "json_keys": keys}
    return first


def _missing(name: str, side: str, left: bool, right: bool) -> DriftReport:
    report = DriftReport(
        model=name, golden_class="?", run_class="?", tolerance_note=f"{name} is missing from {side}"
    )
    report.drifts.append(Drift("files", "model present", left, right))
    return report


def diff_paths(
    old: Path,
    new: Path,
    *,
    overrides: dict[str, dict[str, float]] | None = None,
    sections: tuple[str, ...] = SECTIONS,
) -> list[DriftReport]:
    """One report per model present on either side; a missing side is a drift.

    A single document against a folder of several prompt files (a golden against a run of
    its suite) compares with all of them, prompts paired by the hash of their text.
    """
    left, right = load_side(old), load_side(new)
    if len(left) == 1 and len(right) > 1:
        right = {next(iter(left)): _merged(right)}
    elif len(right) == 1 and len(left) > 1:
        left = {next(iter(right)): _merged(left)}
    if len(left) == 1 and len(right) == 1 and set(left) != set(right):
        right = {next(iter(left)): next(iter(right.values()))}  # two single files: pair them
    reports = []
    for name in sorted(set(left) | set(right)):
        if name not in left or name not in right:
            side = "OLD" if name not in left else "NEW"
            reports.append(_missing(name, side, name in left, name in right))
            continue
        tol, note = tolerances_between(left[name], right[name], overrides)
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
        "ok": all(r.ok and r.identity_ok for r in reports),
        "models": [
            {
                "model": r.model,
                "golden_class": r.golden_class,
                "run_class": r.run_class,
                "tolerance_note": r.tolerance_note,
                "ok": r.ok and r.identity_ok,
                "compared": dict(r.compared),
                "changed_prompts": r.changed_prompts,
                "missing_prompts": r.missing_prompts,
                "removed_prompts": r.removed_prompts,
                "drifts": [drift(d) for d in r.drifts],
                "near_ties": [drift(d) for d in r.near_ties],
            }
            for r in reports
        ],
    }
    return json.dumps(out, ensure_ascii=False, indent=2)


def render_all(reports: list[DriftReport]) -> str:
    """The text report of every model."""
    return "\n\n".join(render_report(r, old="OLD", new="NEW") for r in reports)


def reports_markdown(reports: list[DriftReport]) -> str:
    """The reports as markdown (``--format markdown``: CI job summaries)."""
    return render_markdown(reports, old="OLD", new="NEW")
