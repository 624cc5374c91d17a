"""What a golden file holds: the observable behaviour of one lens run, minus noise."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from lenscheck.schema import CSV_DIALECT, csv_header

if TYPE_CHECKING:
    from lenscheck.lens import LensResult

__all__ = [
    "FORMAT_VERSION",
    "golden_class",
    "golden_payload",
    "json_key_tree",
    "model_dir_name",
]

FORMAT_VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def model_dir_name(spec: str) -> str:
    """Folder under golden/ for a model: its alias, or its id with ``/`` as ``__``."""
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


def json_key_tree(value: Any) -> Any:
    """The key structure of a JSON value: dicts keep key order, lists show one element."""
    if isinstance(value, dict):
        return {k: json_key_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_key_tree(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return "bool" if isinstance(value, bool) else "null"
    return {int: "int", float: "float", str: "str"}.get(type(value), type(value).__name__)


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


def _trajectory(result: LensResult) -> list[dict[str, Any]]:
    rows = []
    for rec in result.pure_records:
        (t1, p1), (_t2, p2) = rec["topk"][0], rec["topk"][1]
        rows.append(
            {
                "layer": rec["layer"],
                "top1": t1,
                "p_top1": p1,
                "p_top2": p2,
                "entropy": rec["entropy"],
            }
        )
    return rows


def golden_payload(
    result: LensResult, *, model: str, device: str, top_k_verbose: int
) -> dict[str, Any]:
    """The golden document for one run (what ``--snapshot-update`` writes)."""
    diag = result.diagnostics
    dtype = diag["compute_dtype"]
    return {
        "format_version": FORMAT_VERSION,
        "model": model,
        "class": golden_class(device, dtype),
        "environment": {
            **diag["versions"],
            "device": device,
            "dtype": dtype,
            "backend": diag["backend"],
        },
        "schema": {
            "records_header": ",".join(csv_header("records", top_k_verbose)),
            "pure_header": ",".join(csv_header("pure", top_k_verbose)),
            "csv_dialect": _dialect(),
            "json_keys": json_key_tree(_stable_json(result.json_data)),
        },
        "model_stats": {k: v for k, v in result.json_data["model_stats"].items() if k != "type"},
        "tokenization": {
            "prepend_bos": diag["tokenization"]["prepend_bos"],
            "input_ids": list(result.input_ids),
            "tokens": [r["token"] for r in result.records[: len(result.input_ids)]],
        },
        "collapse": {k: diag[k] for k in ("L_copy", "L_copy_H", "L_semantic", "delta_layers")},
        "final_prediction": {
            "entropy": result.json_data["final_prediction"]["entropy"],
            "top5": result.json_data["final_prediction"]["topk"][:5],
        },
        "trajectory": _trajectory(result),
    }


def _stable_json(data: dict[str, Any]) -> dict[str, Any]:
    """The JSON minus values whose *type* legitimately varies (None vs int collapse layers)."""
    diag = {
        k: v
        for k, v in data["diagnostics"].items()
        if k not in ("L_copy", "L_copy_H", "L_semantic", "delta_layers")
    }
    return {**data, "diagnostics": diag}
