"""Reading and writing golden files, with errors that name the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lenscheck.golden.payload import FORMAT_VERSION

__all__ = ["GoldenFormatError", "dumps_golden", "find_golden", "loads_golden", "read_golden"]

_REQUIRED = (
    "format_version",
    "model",
    "class",
    "environment",
    "schema",
    "model_stats",
    "tokenization",
    "collapse",
    "final_prediction",
    "trajectory",
)


class GoldenFormatError(ValueError):
    """A golden file lenscheck cannot use as it is."""


def dumps_golden(payload: dict[str, Any]) -> str:
    """Human-readable, diff-friendly JSON text (one key per line, trailing newline)."""
    return json.dumps(payload, ensure_ascii=False, indent=1, allow_nan=False) + "\n"


def loads_golden(text: str, *, source: str = "<golden>", model: str = "MODEL") -> dict[str, Any]:
    """Parse and check a golden document; errors name ``source`` and the fix."""
    fix = f"regenerate with: pytest --lens-models={model} --snapshot-update"
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
            f"{FORMAT_VERSION}; {fix}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise GoldenFormatError(f"golden file {source} lacks {', '.join(missing)}; {fix}")
    return data


def read_golden(path: Path, *, model: str = "MODEL") -> dict[str, Any]:
    """Read and check the golden at ``path``."""
    return loads_golden(path.read_text(encoding="utf-8"), source=str(path), model=model)


def find_golden(model_dir: Path, run_class: str) -> Path | None:
    """The golden for ``run_class``, else another class's (fp32 CPU first), else None."""
    own = model_dir / f"{run_class}.json"
    if own.exists():
        return own
    others = sorted(model_dir.glob("*.json"), key=lambda p: (p.stem != "cpu-float32", p.stem))
    return others[0] if others else None
