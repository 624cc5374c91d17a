"""Reading and writing golden files, with errors that name the file and the fix.

Where a golden lives: ``<golden dir>/<model>/[<suite>/]<class>[.decode-<point>].json``. The
default suite's goldens sit directly in the model's folder (where format 1 kept them),
another suite's in a sub-folder named after it; a decoding point other than next-ln1 is
part of the file name, so one model keeps a golden per point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lenscheck.golden.payload import FORMAT_VERSION
from lenscheck.suites import DEFAULT_SUITE_NAME
from lenscheck.vocab import NEXT_LN1, OBTAINED_SUFFIX

__all__ = [
    "OBTAINED_SUFFIX",
    "GoldenFormatError",
    "dumps_golden",
    "find_golden",
    "golden_dir",
    "golden_stem",
    "loads_golden",
    "read_golden",
]

#: How a golden's stem names a decoding point: ``cpu-float32.decode-final``.
_DECODE = ".decode-"
_REQUIRED = (
    "format_version",
    "model",
    "suite",
    "class",
    "decode_norm",
    "environment",
    "schema",
    "model_stats",
    "facts",
    "prompts",
)


class GoldenFormatError(ValueError):
    """A golden file lenscheck cannot use as it is."""


def golden_dir(root: Path, model_dir: str, suite: str) -> Path:
    """The folder of one model's goldens for ``suite``."""
    base = Path(root) / model_dir
    return base if suite == DEFAULT_SUITE_NAME else base / suite


def golden_stem(cls: str, decode_norm: str) -> str:
    """File stem of a golden: its class, plus the decoding point when not next-ln1."""
    return cls if decode_norm == NEXT_LN1 else f"{cls}{_DECODE}{decode_norm}"


def _inline(value: Any) -> bool:
    """A list of scalars, written on one line: one layer's values per line, diff-friendly."""
    return isinstance(value, list) and all(not isinstance(v, (list, dict)) for v in value)


def _render(value: Any, depth: int) -> str:
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {_render(v, depth + 1)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and not _inline(value):
        return "[\n" + ",\n".join(f"{inner}{_render(v, depth + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def dumps_golden(payload: dict[str, Any]) -> str:
    """Human-readable, diff-friendly JSON: one key per line, a list of numbers or tokens (one
    layer's cells, say) on one line, UTF-8 text unescaped, a trailing newline."""
    return _render(payload, 0) + "\n"


def loads_golden(text: str, *, source: str = "<golden>", fix: str = "") -> dict[str, Any]:
    """Parse and check a golden document; errors name ``source`` and ``fix`` (the command
    that re-blesses it)."""
    fix = fix or "re-bless it with: pytest --lens-models=MODEL --snapshot-update"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GoldenFormatError(f"golden file {source} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise GoldenFormatError(
            f"golden file {source} holds {type(data).__name__}, not an object; {fix}"
        )
    version = data.get("format_version")
    if not isinstance(version, int):
        raise GoldenFormatError(f"golden file {source} has no integer format_version; {fix}")
    if version > FORMAT_VERSION:
        raise GoldenFormatError(
            f"golden file {source} has format {version}, newer than this lenscheck reads "
            f"({FORMAT_VERSION}); upgrade lenscheck (pip install -U lenscheck) or {fix}"
        )
    if version < FORMAT_VERSION:
        raise GoldenFormatError(
            f"golden file {source} has format {version}, older than the current "
            f"{FORMAT_VERSION} (which pins every records cell, the probes and more); {fix}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise GoldenFormatError(f"golden file {source} lacks {', '.join(missing)}; {fix}")
    return data


def read_golden(path: Path, *, fix: str = "") -> dict[str, Any]:
    """Read and check the golden at ``path``."""
    return loads_golden(path.read_text(encoding="utf-8"), source=str(path), fix=fix)


def find_golden(folder: Path, run_class: str, decode_norm: str = NEXT_LN1) -> Path | None:
    """The golden for ``run_class``, else another class's (fp32 CPU first), else None;
    always of the same decoding point, never an obtained file."""
    own = folder / f"{golden_stem(run_class, decode_norm)}.json"
    if own.exists():
        return own

    def same_point(path: Path) -> bool:
        if path.name.endswith(OBTAINED_SUFFIX):
            return False
        _, _, point = path.stem.partition(_DECODE)
        return (point or NEXT_LN1) == decode_norm

    others = sorted(
        (p for p in folder.glob("*.json") if same_point(p)),
        key=lambda p: (not p.stem.startswith("cpu-float32"), p.stem),
    )
    return others[0] if others else None
