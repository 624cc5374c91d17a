"""Reading and writing golden files, with errors that name the file and the fix.

Where a golden lives: ``<golden dir>/<model>/[<suite>/]<class><settings>.json``. The
default suite's goldens sit directly in the model's folder, another suite's in a sub-folder
named after it. ``<settings>`` names the conventions the golden was blessed under where
they differ from the standard preset's (``.decode-next-ln1``, ``.bos-always``,
``.schema-original``, ``.chat``, ``.lens-tuned``), or ``.original`` for the original
pipeline's whole set, so one model keeps a golden per decoding point, convention and lens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lenscheck.config import PRESET_SETTINGS
from lenscheck.golden.payload import FORMAT_VERSION
from lenscheck.suites import DEFAULT_SUITE_NAME
from lenscheck.vocab import OBTAINED_SUFFIX, PRESET_ORIGINAL, PRESET_STANDARD

__all__ = [
    "OBTAINED_SUFFIX",
    "STANDARD_SETTINGS",
    "GoldenFormatError",
    "dumps_golden",
    "find_golden",
    "golden_dir",
    "golden_stem",
    "goldens_of_class",
    "loads_golden",
    "read_golden",
]

#: The conventions a golden's file name leaves out: the standard preset's.
STANDARD_SETTINGS: dict[str, object] = {
    **PRESET_SETTINGS[PRESET_STANDARD],
    "chat_template": False,
    "lens": "logit",
}
_ORIGINAL_SETTINGS = {**PRESET_SETTINGS[PRESET_ORIGINAL], "chat_template": False, "lens": "logit"}
#: How a stem spells each setting that differs from the standard.
_STEM_PARTS = {"decode_norm": "decode", "bos": "bos", "schema": "schema", "lens": "lens"}
_REQUIRED = (
    "format_version",
    "model",
    "suite",
    "class",
    "decode_norm",
    "settings",
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


def golden_stem(cls: str, settings: Mapping[str, object]) -> str:
    """File stem of a golden: its class, then the settings that differ from the standard's
    (``cpu-float32.decode-raw``), or ``.original`` for the original pipeline's conventions."""
    full = {**STANDARD_SETTINGS, **{k: v for k, v in settings.items() if k in STANDARD_SETTINGS}}
    if full == _ORIGINAL_SETTINGS:
        return f"{cls}.{PRESET_ORIGINAL}"
    parts = [
        f".{_STEM_PARTS[key]}-{full[key]}"
        for key in _STEM_PARTS
        if full[key] != STANDARD_SETTINGS[key]
    ]
    if full["chat_template"]:
        parts.append(".chat")
    return cls + "".join(parts)


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
            f"{FORMAT_VERSION}, which pins every top-k pair and the extended schema's "
            "measurements (format 4) and the settings a golden was blessed under (3). Since "
            "format 3 lenscheck's defaults are the model's own conventions (the final-norm lens, "
            "the tokenizer's own BOS); a golden meant to keep the original pipeline's (next-ln1, "
            f"BOS always) is re-blessed with --lens-preset=original. {fix}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise GoldenFormatError(f"golden file {source} lacks {', '.join(missing)}; {fix}")
    return data


def read_golden(path: Path, *, fix: str = "") -> dict[str, Any]:
    """Read and check the golden at ``path``."""
    return loads_golden(path.read_text(encoding="utf-8"), source=str(path), fix=fix)


def find_golden(
    folder: Path, run_class: str, settings: Mapping[str, object] = STANDARD_SETTINGS
) -> Path | None:
    """The golden for ``run_class``, else another class's (fp32 CPU first), else None;
    always of the same settings, never an obtained file."""
    own = folder / f"{golden_stem(run_class, settings)}.json"
    if own.exists():
        return own
    suffix = golden_stem("", settings)

    def same_settings(path: Path) -> bool:
        if path.name.endswith(OBTAINED_SUFFIX):
            return False
        cls, _, rest = path.stem.partition(".")
        return (f".{rest}" if rest else "") == suffix and bool(cls)

    others = sorted(
        (p for p in folder.glob("*.json") if same_settings(p)),
        key=lambda p: (not p.stem.startswith("cpu-float32"), p.stem),
    )
    return others[0] if others else None


def goldens_of_class(folder: Path, run_class: str) -> list[Path]:
    """Every golden of ``run_class`` in ``folder`` whatever its settings (no obtained file)."""
    return sorted(
        p
        for p in folder.glob(f"{run_class}*.json")
        if not p.name.endswith(OBTAINED_SUFFIX)
        and (p.stem == run_class or p.stem.startswith(f"{run_class}."))
    )
