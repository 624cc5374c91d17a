"""What a golden file holds: every value class of one model's output files, minus noise.

One document per model, prompt suite, dtype/device class and decoding point. Model-level
sections (schema, model_stats, facts) come first, then one entry per prompt, keyed by its
id, holding what the JSON and both CSVs say about it: every (layer, position) cell of the
records CSV, every next-token row and flag of the pure CSV, the probes, the temperature
exploration, the final prediction, the collapse layers and the decoding-point ablation.

The builders read the same shapes the files hold (the JSON document, record dicts with
``topk`` pairs), so the plugin (from a run) and ``lenscheck diff`` (from files on disk)
produce identical documents.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lenscheck.metrics.files import SidecarTable, parse_sidecar_bytes
from lenscheck.metrics.table import CONTROL_SUMMARY_KEY, declared, grid_metrics
from lenscheck.schema import CSV_DIALECT, FLAG_COLUMNS, CsvTable, parse_csv_bytes
from lenscheck.vocab import BOS_ALWAYS, DECODE_POINTS, NEXT_LN1, SCHEMA_ORIGINAL

__all__ = [
    "BACKEND_DEPENDENT_FACTS",
    "CLASS_DEPENDENT_FACTS",
    "FACT_KEYS",
    "FORMAT_VERSION",
    "PROMPT_SECTIONS",
    "PromptFiles",
    "golden_class",
    "golden_payload",
    "json_key_tree",
    "merge_key_trees",
    "model_dir_name",
    "prompt_digest",
    "prompt_payload",
    "round_sig",
    "settings_of",
]

#: 4: every top-k pair of every row and cell, and the extended schema's measurements
#: (``metrics``: the pure CSV's extended columns, the rawlens and milestones sidecars, the
#: raw-vs-norm summary; lenscheck.metrics.table); 3: the settings a golden was blessed
#: under (decoding point, BOS policy, schema, chat template) and their facts, the BOS
#: alternative and the embedding echo; 2: one entry per prompt (suites), every records
#: cell, probes, temperatures, flags, the decoding-point ablation, model facts; 1: one
#: prompt, next-token rows only.
FORMAT_VERSION = 4
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SIG_DIGITS = 8
#: Diagnostics pinned as facts (norm classes, the fixes the lens applied, configuration).
FACT_KEYS = (
    "use_norm_lens",
    "first_block_ln1_type",
    "final_ln_type",
    "layernorm_bias_fix",
    "norm_alignment_fix",
    "layer0_norm_fix",
    "mixed_precision_fix",
    "layer0_position_info",
    "target_prediction",
    "model_source",
    "architecture",
    "model_class",
    "copy_threshold",
    "copy_margin",
    "decode_norm",
    "bos",
    "schema",
    "chat_template",
    "collapse_from_layer",
    "lens",
    "use_fp32_unembed",
    "unembed_dtype",
)
#: Facts that follow the dtype: compared only between goldens and runs of one class.
CLASS_DEPENDENT_FACTS = ("use_fp32_unembed", "unembed_dtype")
#: Facts that name a library's module class: transformers' ``LlamaRMSNorm`` is
#: HookedTransformer's ``RMSNorm``. Compared only between goldens and runs of one backend;
#: the values the norm produces are compared whatever the backend.
BACKEND_DEPENDENT_FACTS = ("first_block_ln1_type", "final_ln_type")
#: Per-prompt sections, in file order; each belongs to exactly one generated test.
PROMPT_SECTIONS = (
    "tokenization",
    "collapse",
    "flags",
    "next_token",
    "records",
    "probes",
    "temperature",
    "final_prediction",
    "decoding",
    "metrics",
)
#: The collapse layers (the table's layer-valued prompt measurements of the original
#: JSON): their values are pinned, their types (null or int) are not part of the schema.
_UNSTABLE_DIAGNOSTICS = tuple(
    m.name for m in declared("json", SCHEMA_ORIGINAL) if m.scope == "prompt" and m.kind == "int"
)
_NULLABLE_SUMMARY = "first_norm_only_semantics_layer"


def round_sig(value: float) -> float:
    """``value`` to 8 significant digits: 1e-6 bits at 17 bits of entropy, a hundredth of the
    tightest tolerance, and half the bytes of ``repr``."""
    return float(f"{value:.{_SIG_DIGITS}g}")


def _r(values: Iterable[Any]) -> list[Any]:
    return [round_sig(v) if isinstance(v, float) else v for v in values]


def model_dir_name(spec: str) -> str:
    """Folder under golden/ for a model key: its alias or name, ``/`` as ``__``."""
    cleaned = spec.strip().rstrip("/\\").replace("\\", "/")
    if "/" in cleaned and not cleaned.startswith((".", "/")):
        name = "__".join(part for part in cleaned.split("/") if part not in ("", ".", ".."))
    else:
        name = cleaned.split("/")[-1]
    name = _UNSAFE.sub("_", name)
    if name.strip(".") == "":
        raise ValueError(f"model {spec!r} gives no usable golden folder name")
    return name


def golden_class(device: str, dtype: str) -> str:
    """``cpu-float32``, ``cuda-float16``...: goldens and tolerances are per class."""
    return f"{device.split(':')[0]}-{dtype.removeprefix('torch.')}"


def prompt_digest(prompt: str, answer: str, probes: Sequence[str]) -> str:
    """SHA-256 of a prompt, its answer and its probes (as :attr:`PromptCase.digest`)."""
    text = json.dumps([prompt, answer, list(probes)], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def json_key_tree(value: Any) -> Any:
    """The key structure of a JSON value: dicts keep key order, lists show one element."""
    if isinstance(value, dict):
        return {k: json_key_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_key_tree(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return "bool" if isinstance(value, bool) else "null"
    return {int: "int", float: "float", str: "str"}.get(type(value), type(value).__name__)


def merge_key_trees(trees: Iterable[Any]) -> Any:
    """One key tree for several documents: keys in first-seen order, a list's element from
    the first document whose list is not empty (a prompt without probes has ``[]``)."""
    trees = list(trees)
    first = trees[0]
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for t in trees if isinstance(t, dict) for k in t))
        return {
            k: merge_key_trees([t[k] for t in trees if isinstance(t, dict) and k in t])
            for k in keys
        }
    if isinstance(first, list):
        items = [t[0] for t in trees if isinstance(t, list) and t]
        return [merge_key_trees(items)] if items else []
    return first


def _dialect() -> dict[str, Any]:
    d = CSV_DIALECT
    return {
        "delimiter": d.delimiter,
        "quotechar": d.quotechar,
        "escapechar": d.escapechar,
        "lineterminator": d.lineterminator,
        "quoting": "QUOTE_MINIMAL",
        "doublequote": d.doublequote,
    }


def _stable_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON minus values whose *type* legitimately varies (None vs int layers)."""
    diag = {k: v for k, v in data["diagnostics"].items() if k not in _UNSTABLE_DIAGNOSTICS}
    # Layers that may be null (a milestone not reached): their keys, not their types.
    if isinstance(diag.get("milestones"), dict):
        diag["milestones"] = dict.fromkeys(diag["milestones"], 0)
    if isinstance(diag.get("raw_lens_summary"), dict):
        diag["raw_lens_summary"] = {**diag["raw_lens_summary"], _NULLABLE_SUMMARY: 0}
    if isinstance(diag.get("control_summary"), dict):  # its layers and maximum may be null
        diag["control_summary"] = dict.fromkeys(diag["control_summary"], 0)
    if "answer_first_id" in diag:
        diag["answer_first_id"] = 0
    ablation = diag.get("decoding_ablation")
    if isinstance(ablation, dict):
        diag["decoding_ablation"] = {
            k: (
                {kk: vv for kk, vv in v.items() if kk != "L_semantic"} if isinstance(v, dict) else v
            )
            for k, v in ablation.items()
        }
    return {**data, "diagnostics": diag}


def _top2(topk: Sequence[Sequence[Any]]) -> tuple[str, float, float]:
    """Top-1 text, p(top-1) and p(top-2) of a top-k list (p2 = 0 with one entry)."""
    return str(topk[0][0]), float(topk[0][1]), float(topk[1][1]) if len(topk) > 1 else 0.0


def _pairs(topk: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Every (token, probability) pair of a top-k list, probabilities rounded."""
    return [[str(t), round_sig(float(p))] for t, p in topk]


#: The near-tie views of a row's top-k pairs: what a changed top-1 is judged by.
_VIEWS = ("top1", "p_top1", "p_top2")


def _pinned() -> tuple[str, ...]:
    """The names :func:`_row_values` gives, in order."""
    return (*_VIEWS, *(m.name for m in grid_metrics()), "topk")


def _row_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a golden pins of one records cell or next-token row: the views of its top-k,
    each value column the metric table declares for the grid (lenscheck.metrics.table.
    grid_metrics: ``entropy``), then every top-k pair."""
    t1, p1, p2 = _top2(row["topk"])
    out: dict[str, Any] = dict(zip(_VIEWS, (t1, round_sig(p1), round_sig(p2))))
    for m in grid_metrics():
        value = row[str(m.column)]
        out[m.name] = round_sig(float(value)) if m.kind == "float" else value
    out["topk"] = _pairs(row["topk"])
    return out


def _grid(records: Sequence[Mapping[str, Any]]) -> dict[str, list[list[Any]]]:
    """Records as [layer][position] arrays, one per pinned value (:func:`_row_values`)."""
    n_layers = 1 + max(int(r["layer"]) for r in records)
    n_pos = 1 + max(int(r["pos"]) for r in records)
    cells = {name: [[None] * n_pos for _ in range(n_layers)] for name in _pinned()}
    for r in records:
        for name, value in _row_values(r).items():
            cells[name][int(r["layer"])][int(r["pos"])] = value
    return cells


def _rows(pure: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Next-token rows (their layer, then :func:`_row_values`) and their flags."""
    rows: dict[str, list[Any]] = {"layer": [int(r["layer"]) for r in pure]}
    rows.update({name: [] for name in _pinned()})
    for r in pure:
        for name, value in _row_values(r).items():
            rows[name].append(value)
    flags = {f: [r.get(f) for r in pure] for f in FLAG_COLUMNS}
    return rows, flags


def _distributions(items: Sequence[Mapping[str, Any]], key: str) -> dict[str, list[Any]]:
    tops = [_top2(i["topk"]) for i in items]
    return {
        key: [i[key] for i in items],
        "top1": [t for t, _, _ in tops],
        "p_top1": _r(p for _, p, _ in tops),
        "p_top2": _r(p for _, _, p in tops),
        "entropy": _r(float(i["entropy"]) for i in items),
    }


def _decoding(ablation: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not ablation:
        return None  # files written before the ablation existed
    out: dict[str, Any] = {"onset_disagreement": ablation["onset_disagreement"]}
    for point in DECODE_POINTS:
        block = ablation[point]
        out[point] = {
            "L_semantic": block["L_semantic"],
            "top1": list(block["top1"]),
            "p_top1": _r(block["p_top1"]),
            "p_top2": _r(block["p_top2"]),
            "entropy": _r(block["entropy"]),
            "p_answer": _r(block["p_answer"]),
            "answer_rank": list(block["answer_rank"]),
        }
    return out


def settings_of(diag: Mapping[str, Any]) -> dict[str, Any]:
    """The conventions a run's JSON says it followed (the original schema records only its
    decoding point: the rest are the original pipeline's)."""
    return {
        "decode_norm": diag.get("decode_norm", NEXT_LN1),
        "bos": diag.get("bos", BOS_ALWAYS),
        "schema": diag.get("schema", SCHEMA_ORIGINAL),
        "chat_template": bool(diag.get("chat_template", False)),
        "lens": (diag.get("lens") or {}).get("kind", "logit"),
    }


def _other_bos(tokenization: Mapping[str, Any]) -> dict[str, Any] | None:
    other = tokenization.get("other_bos")
    if not other:
        return None
    probs = {k: round_sig(float(other[k])) for k in ("final_p_top1", "final_p_top2") if k in other}
    return {**other, **probs}


def _echo(diag: Mapping[str, Any]) -> dict[str, Any] | None:
    echo = diag.get("embedding_echo")
    return None if echo is None else {**echo, "p_top1": round_sig(float(echo["p_top1"]))}


def _by_column(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    return {c: _r(row.get(c) for row in rows) for c in names}


def _metrics(
    diag: Mapping[str, Any],
    pure_records: Sequence[Mapping[str, Any]],
    rawlens: Sequence[Mapping[str, Any]] | None,
    milestones: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """The extended schema's measurements (None when the files have none): every column
    of the pure CSV after its flags, every rawlens column, the milestones, the summary."""
    extra = [dict(r.get("metrics") or {}) for r in pure_records]
    if not any(extra) and rawlens is None and milestones is None:
        return None
    names = list(dict.fromkeys(c for row in extra for c in row))
    summary = diag.get("raw_lens_summary")
    out: dict[str, Any] = {
        "next_token": _by_column(extra, names),
        "rawlens": None if rawlens is None else _by_column(rawlens, list(rawlens[0])),
        "milestones": None if milestones is None else dict(milestones),
        "raw_lens_summary": None if summary is None else _summary_of(summary, _RAW_SUMMARY),
    }
    control = diag.get("control_summary")
    if control is not None:  # a control prompt's only: other entries keep their shape
        out["control_summary"] = _summary_of(control, CONTROL_SUMMARY_KEY)
    return out


_RAW_SUMMARY = "diagnostics.raw_lens_summary."


def _summary_of(summary: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The declared values of one JSON summary (floats rounded as everywhere)."""
    metrics = [m for m in declared("json", "extended") if str(m.json_key).startswith(key)]
    return {m.name: _r([summary.get(m.name)])[0] for m in metrics}


def prompt_payload(
    json_data: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]] | None,
    pure_records: Sequence[Mapping[str, Any]],
    rawlens: Sequence[Mapping[str, Any]] | None = None,
    milestones: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The golden entry of one prompt, from what its JSON and CSVs hold.

    ``records`` None: no records CSV (the original pipeline did not always keep one);
    ``rawlens``/``milestones``: the extended schema's sidecars (rows; the milestones).
    A JSON without probes, temperatures or a final prediction (the original's later files
    hold them for one prompt of several: lenscheck.golden.later) gives None for them.
    """
    diag = json_data["diagnostics"]
    prompt = json_data["prompt"]
    probes = json_data.get("test_prompts")
    tokenization = diag.get("tokenization") or {}
    rows, flags = _rows(pure_records)
    final = json_data.get("final_prediction")
    temperature = json_data.get("temperature_exploration")
    return {
        "sha256": prompt_digest(
            prompt["context_prompt"], prompt["ground_truth"], [p["prompt"] for p in probes or ()]
        ),
        "prompt": prompt["context_prompt"],
        "answer": prompt["ground_truth"],
        "tokenization": {
            "prepend_bos": tokenization.get("prepend_bos"),
            "bos_policy": tokenization.get("bos_policy"),
            "tokenizer_adds_bos": tokenization.get("tokenizer_adds_bos"),
            "input_ids": tokenization.get("input_ids"),
            "tokens": None if records is None else [r["token"] for r in records if r["layer"] == 0],
            "answer_ids": diag.get("ground_truth_token_ids"),
            "other_bos": _other_bos(tokenization),
        },
        "collapse": {
            **{k: diag.get(k) for k in _UNSTABLE_DIAGNOSTICS},
            "embedding_echo": _echo(diag),
        },
        "flags": flags,
        "next_token": rows,
        "records": None if records is None else _grid(records),
        "probes": None if probes is None else _distributions(probes, "prompt"),
        "temperature": None if temperature is None else _distributions(temperature, "temperature"),
        "final_prediction": None
        if final is None
        else {
            "entropy": round_sig(float(final["entropy"])),
            "top5": [[t, round_sig(float(p))] for t, p in final["topk"][:5]],
        },
        "decoding": _decoding(diag.get("decoding_ablation")),
        "metrics": _metrics(diag, pure_records, rawlens, milestones),
    }


@dataclass(frozen=True)
class PromptFiles:
    """One prompt's output files, parsed: the JSON document, both CSV tables and, under the
    extended schema, the two sidecars."""

    json: Mapping[str, Any]
    records: CsvTable | None
    pure: CsvTable
    rawlens: SidecarTable | None = None
    milestones: SidecarTable | None = None

    @classmethod
    def from_bytes(
        cls,
        json_bytes: bytes,
        records_csv: bytes | None,
        pure_csv: bytes,
        *,
        source: str,
        sidecars: tuple[bytes | None, bytes | None] = (None, None),
    ) -> PromptFiles:
        """Parse the bytes a run writes (``source`` names the files in messages;
        ``sidecars``: the rawlens and milestones files' bytes, None where absent)."""
        records = (
            None if records_csv is None else parse_csv_bytes(records_csv, f"{source}-records.csv")
        )
        rawlens, milestones = sidecars
        return cls(
            json=json.loads(json_bytes.decode("utf-8")),
            records=records,
            pure=parse_csv_bytes(pure_csv, f"{source}-pure-next-token.csv"),
            rawlens=None
            if rawlens is None
            else parse_sidecar_bytes(rawlens, f"{source}-pure-next-token-rawlens.csv"),
            milestones=None
            if milestones is None
            else parse_sidecar_bytes(milestones, f"{source}-milestones.csv"),
        )

    def payload(self) -> dict[str, Any]:
        """This prompt's golden entry."""
        records = None if self.records is None else self.records.records()
        rawlens = None if self.rawlens is None else self.rawlens.rows
        milestones = None if self.milestones is None else self.milestones.milestones()
        return prompt_payload(self.json, records, self.pure.records(), rawlens, milestones)


def golden_payload(
    prompts: Mapping[str, PromptFiles],
    *,
    model: str,
    suite: str,
    settings: Mapping[str, Any] | None = None,
    cpu_kernels: str | None = None,
) -> dict[str, Any]:
    """The golden document of one model and suite; ``prompts`` maps each prompt id to its
    parsed files, in suite order. ``settings``: the run's conventions when the caller knows
    them (the original schema's files record only the decoding point; else inferred).
    ``cpu_kernels``: the instruction set of a CPU run's kernels, recorded in the environment
    (lenscheck.device.cpu_kernels; the files do not say it)."""
    files = list(prompts.values())
    diag = files[0].json["diagnostics"]
    dtype = str(diag.get("compute_dtype") or diag["unembed_dtype"])
    device = str(diag["device"])
    records = files[0].records
    return {
        "format_version": FORMAT_VERSION,
        "model": model,
        "suite": suite,
        "class": golden_class(device, dtype),
        "decode_norm": diag.get("decode_norm", NEXT_LN1),
        "settings": dict(settings) if settings is not None else settings_of(diag),
        "environment": {
            **diag.get("versions", {}),
            "device": device,
            "dtype": dtype,
            "backend": diag.get("backend", "unknown (original pipeline)"),
            "preset": diag.get("preset", "unrecorded (original schema)"),
            **({"cpu_kernels": cpu_kernels} if cpu_kernels else {}),
        },
        "schema": {
            "records_header": None if records is None else records.header,
            "pure_header": files[0].pure.header,
            "rawlens_header": None if files[0].rawlens is None else files[0].rawlens.header,
            "milestones_header": None
            if files[0].milestones is None
            else files[0].milestones.header,
            "csv_dialect": _dialect(),
            "json_keys": merge_key_trees(json_key_tree(_stable_json(f.json)) for f in files),
        },
        "model_stats": {k: v for k, v in files[0].json["model_stats"].items() if k != "type"},
        "facts": {k: diag.get(k) for k in FACT_KEYS},
        "prompts": {pid: f.payload() for pid, f in prompts.items()},
    }
