"""The original pipeline's later layout: one model's files hold several prompts.

From autumn 2025 the original writes one ``output-<model>`` set per model for a micro-suite
of facts: every row of its pure next-token, records and rawlens CSVs starts with the prompt
it belongs to (``fact_key,fact_index,prompt_id,prompt_variant``; in earlier versions only
``prompt_id,prompt_variant``), and its JSON describes the first fact's positive prompt.
:func:`later_prompt_files` reads such a set as one prompt per key and rewrites each table in
lenscheck's own layout (the columns lenscheck declares, in its order; the others dropped),
so ``lenscheck diff`` compares it exactly as it compares lenscheck's files.

Prompt ids: ``pos/orig``, ``pos/no_filler`` and ``ctl/orig`` for the JSON's own fact (so the
two versions of the layout pair), ``<fact_key>/<prompt_id>/<prompt_variant>`` for the others.
The prompt text is the JSON's where it gives one (the positive and the control prompt), the
id elsewhere. What the JSON holds for its own prompt only (probes, temperatures, the final
prediction, collapse layers, milestones, summaries) is unknown for the others, not drift.
The original's ``-milestones.csv`` has another layout (one row per lens and kind): the
milestones are read from the JSON's diagnostics under lenscheck's names.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lenscheck.metrics.files import SidecarTable, milestone_rows
from lenscheck.metrics.table import COPY_STRICT_TAUS, MILESTONES_COLUMNS, columns
from lenscheck.schema import (
    CSV_DIALECT,
    CsvSchemaError,
    SchemaViolation,
    csv_header,
    dump_rows_bytes,
    parse_csv_bytes,
)

if TYPE_CHECKING:
    from lenscheck.golden.payload import PromptFiles

__all__ = ["KEY_COLUMNS", "is_later_layout", "later_prompt_files"]

#: The leading columns of the later layout, longest form.
KEY_COLUMNS = ("fact_key", "fact_index", "prompt_id", "prompt_variant")
_PROB = re.compile(r"prob\d+")
#: The JSON's raw-vs-norm summary (``diagnostics.raw_lens_full``) under lenscheck's names.
_RAW_SUMMARY_NAMES = {
    "max_kl_norm_vs_raw_bits": "max_kl_norm_vs_raw_bits",
    "n_norm_only_semantics": "n_norm_only_semantics_layers",
    "first_norm_only_semantics_layer": "earliest_norm_only_semantic",
}
#: The JSON's control summary (``control_summary``) under lenscheck's names.
_CONTROL_NAMES = {
    "first_positive_margin_layer": "first_control_margin_pos",
    "max_control_margin": "max_control_margin",
}


def _key_count(header: Sequence[str]) -> int:
    for n in (4, 2):
        if tuple(header[:n]) == KEY_COLUMNS[-n:]:
            return n
    return 0


def _first_line(data: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(data.decode(), newline=""), dialect=CSV_DIALECT), [])


def is_later_layout(pure_csv: bytes) -> bool:
    """Whether a pure next-token CSV is in the original's later, several-prompt layout."""
    return _key_count(_first_line(pure_csv)) > 0


def _pure_columns(body: Sequence[str]) -> list[str]:
    k = sum(1 for c in body if _PROB.fullmatch(c))
    return [*csv_header("pure", k), *(c for c in columns("pure") if c in body)]


def _records_columns(body: Sequence[str]) -> list[str]:
    return csv_header("records", sum(1 for c in body if _PROB.fullmatch(c)))


def _rawlens_columns(body: Sequence[str]) -> list[str]:
    return list(columns("rawlens"))


def _split(
    data: bytes, source: str, own_fact: str, columns_of: Callable[[Sequence[str]], list[str]]
) -> dict[str, bytes]:
    """Each prompt's rows of one later-layout table, as the bytes of lenscheck's layout."""
    reader = csv.reader(io.StringIO(data.decode(), newline=""), dialect=CSV_DIALECT)
    header = next(reader, [])
    n_keys = _key_count(header)
    body = header[n_keys:]
    keep = columns_of(body)
    missing = [c for c in keep if c not in body]
    if n_keys == 0 or missing:
        found = f"columns {missing} missing" if n_keys else "no prompt key columns"
        expected = f"{','.join(KEY_COLUMNS)} (or the last two), then {','.join(keep)}"
        raise CsvSchemaError([SchemaViolation(source, 0, "*", f"expected {expected}; {found}")])
    at = [n_keys + body.index(c) for c in keep]
    groups: dict[str, list[list[str]]] = {}
    for n, cells in enumerate(reader, start=1):
        if len(cells) != len(header):
            message = f"expected {len(header)} cells, found {len(cells)}"
            raise CsvSchemaError([SchemaViolation(source, n, "*", message)])
        fact = cells[0] if n_keys == 4 else own_fact
        groups.setdefault(_prompt_id(fact, own_fact, *cells[n_keys - 2 : n_keys]), []).append(
            [cells[i] for i in at]
        )
    return {pid: dump_rows_bytes(keep, rows) for pid, rows in groups.items()}


def _prompt_id(fact: str, own_fact: str, prompt_id: str, variant: str) -> str:
    parts = (prompt_id, variant) if fact in ("", own_fact) else (fact, prompt_id, variant)
    return "/".join(parts)


def _own(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON's own (first) prompt, its summaries under lenscheck's names."""
    diag = dict(doc["diagnostics"])
    full = diag.get("raw_lens_full") or {}
    diag["raw_lens_summary"] = {
        ours: full.get(theirs) for ours, theirs in _RAW_SUMMARY_NAMES.items()
    }
    return {**doc, "diagnostics": diag}


def _control(doc: Mapping[str, Any], own: str) -> dict[str, Any]:
    ctl = doc.get("control_prompt") or {}
    summary = doc.get("control_summary") or {}
    control = {ours: summary.get(theirs) for ours, theirs in _CONTROL_NAMES.items()}
    return {
        "prompt": {
            "context_prompt": ctl.get("context_prompt", "ctl/orig"),
            "ground_truth": (ctl.get("gold_answer") or {}).get("string", ""),
        },
        "diagnostics": {"control_summary": {"control_for": own, **control}},
        "model_stats": doc["model_stats"],
    }


def _other(doc: Mapping[str, Any], pid: str, own_answer: str) -> dict[str, Any]:
    fact = pid.split("/")[0] if pid.count("/") == 2 else ""
    answer = fact.split("→", 1)[1] if "→" in fact else own_answer
    return {
        "prompt": {"context_prompt": pid, "ground_truth": answer},
        "diagnostics": {},
        "model_stats": doc["model_stats"],
    }


def _milestones(diag: Mapping[str, Any], source: str) -> SidecarTable:
    """The JSON's milestones of its own prompt as lenscheck's milestones table."""
    strict = (diag.get("copy_thresholds") or {}).get("L_copy_strict") or {}
    soft = {int(k): v for k, v in (diag.get("L_copy_soft") or {}).items() if v is not None}
    k = min(soft, key=lambda w: (soft[w], w)) if soft else None
    values: dict[str, Any] = {
        name: diag.get(name)
        for name in (
            "first_rank_le_1",
            "first_rank_le_5",
            "first_rank_le_10",
            "first_kl_below_1.0",
            "first_kl_below_0.5",
        )
    }
    values.update({f"L_copy_strict@{t}": strict.get(str(t)) for t in COPY_STRICT_TAUS})
    values.update({"L_copy_soft": None if k is None else soft[k], "L_copy_soft_k": k})
    rows = [dict(zip(MILESTONES_COLUMNS, row)) for row in milestone_rows(values)]
    return SidecarTable(f"{source}.json", "milestones", ",".join(MILESTONES_COLUMNS), rows)


def later_prompt_files(
    json_bytes: bytes,
    records_csv: bytes | None,
    pure_csv: bytes,
    rawlens_csv: bytes | None,
    *,
    source: str,
) -> dict[str, PromptFiles]:
    """One :class:`lenscheck.golden.payload.PromptFiles` per prompt of a later-layout set,
    the JSON's own prompt first (``source``: the files' common path, for messages)."""
    import json

    from lenscheck.golden.payload import PromptFiles
    from lenscheck.metrics.files import parse_sidecar_bytes

    doc = json.loads(json_bytes.decode("utf-8"))
    prompt = doc["prompt"]
    own = str(prompt.get("fact_key", ""))
    pure = _split(pure_csv, f"{source}-pure-next-token.csv", own, _pure_columns)
    records = (
        {}
        if records_csv is None
        else _split(records_csv, f"{source}-records.csv", own, _records_columns)
    )
    raw_source = f"{source}-pure-next-token-rawlens.csv"
    rawlens = {} if rawlens_csv is None else _split(rawlens_csv, raw_source, own, _rawlens_columns)
    own_id = "pos/orig"
    out: dict[str, PromptFiles] = {}
    for pid in sorted(pure, key=lambda p: (p != own_id, p.count("/"), p)):
        if pid == own_id:
            data = _own(doc)
        elif pid == "ctl/orig":
            data = _control(doc, own_id)
        else:
            data = _other(doc, pid, str(prompt["ground_truth"]))
        out[pid] = PromptFiles(
            json=data,
            records=None
            if pid not in records
            else parse_csv_bytes(records[pid], f"{source}-records.csv [{pid}]"),
            pure=parse_csv_bytes(pure[pid], f"{source}-pure-next-token.csv [{pid}]"),
            rawlens=None
            if pid not in rawlens
            else parse_sidecar_bytes(rawlens[pid], f"{raw_source} [{pid}]"),
            milestones=_milestones(data["diagnostics"], source) if pid == own_id else None,
        )
    return out
