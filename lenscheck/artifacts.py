"""Output files: names, atomic writes, the JSON summary and the run-latest rotation."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lenscheck.vocab import OUTPUT_PREFIX, OUTPUT_SUFFIXES, OutputKind

__all__ = [
    "OutputPaths",
    "RunStage",
    "atomic_write_bytes",
    "clean_model_name",
    "dump_json_bytes",
    "output_paths",
    "setup_run_latest_directory",
    "stage_bytes",
    "staged_run_latest",
    "write_files_atomically",
]

log = logging.getLogger(__name__)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def clean_model_name(model_id: str) -> str:
    """File-safe stem for a model id: the part after the last ``/``.

    Anything outside ``[A-Za-z0-9._-]`` becomes ``_`` and ``.``/``..`` are refused,
    so a hostile id can never name a path outside the output directory.
    """
    stem = _SAFE.sub("_", model_id.strip().rstrip("/\\").replace("\\", "/").split("/")[-1])
    if stem.strip(".") == "":
        raise ValueError(
            f"model id {model_id!r} gives no usable file name; expected something like "
            "'org/name' or 'embedded'"
        )
    return stem


class OutputPaths:
    """The files one model's run writes into ``out_dir`` for one lens.

    ``lens_suffix`` follows each file's kind: none for the logit lens (the original's
    names), ``-tuned`` for the tuned lens (``output-NAME-records-tuned.csv``). The residuals
    do not depend on the lens and keep their one name.
    """

    def __init__(self, out_dir: Path, name: str, lens_suffix: str = "") -> None:
        self.out_dir = out_dir
        self.name = name
        self.lens_suffix = lens_suffix

        def path(kind: OutputKind) -> Path:
            base, _, ext = OUTPUT_SUFFIXES[kind].rpartition(".")
            lens = "" if kind == "residuals" else lens_suffix
            return out_dir / f"{OUTPUT_PREFIX}{name}{base}{lens}.{ext}"

        self.json = path("json")
        self.records_csv = path("records")
        self.pure_csv = path("pure")
        self.heatmap = path("heatmap")
        self.residuals = path("residuals")
        self.rawlens_csv = path("rawlens")
        self.milestones_csv = path("milestones")

    def all(self) -> list[Path]:
        """Every path, in the order they are written."""
        return [
            self.records_csv,
            self.pure_csv,
            self.json,
            self.heatmap,
            self.residuals,
            self.rawlens_csv,
            self.milestones_csv,
        ]


def output_paths(
    out_dir: str | os.PathLike[str], model_id: str, lens_suffix: str = ""
) -> OutputPaths:
    """Output paths for ``model_id`` (and a lens' file suffix); they always stay inside
    ``out_dir``."""
    if lens_suffix and clean_model_name(f"x{lens_suffix}") != f"x{lens_suffix}":
        raise ValueError(f"lens suffix {lens_suffix!r} is not file-safe; expected e.g. '-tuned'")
    return OutputPaths(Path(out_dir), clean_model_name(model_id), lens_suffix)


def stage_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new hidden sibling of ``path`` and return that temporary path.

    ``open(..., "xb")`` (not mkstemp) so the file gets the user's umask, like any output.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_files_atomically(files: Mapping[Path, bytes]) -> None:
    """Stage every file, then rename them all into place, as a set.

    If anything fails, including a rename half way through the set, the files already
    renamed are rolled back: the previous versions come back from their backups and
    new ones are removed. Staged parts and backups never stay behind.
    """
    staged: list[tuple[Path, Path]] = []
    placed: list[tuple[Path, Path | None]] = []  # (target, backup of the old file)
    try:
        for path, data in files.items():
            staged.append((stage_bytes(path, data), path))
        for tmp, path in staged:
            backup = None
            if path.exists():
                backup = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.bak")
                os.replace(path, backup)
            placed.append((path, backup))
            os.replace(tmp, path)
    except BaseException:
        _roll_back(placed)
        raise
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    for _, backup in placed:
        if backup is not None:
            backup.unlink(missing_ok=True)


def _roll_back(placed: list[tuple[Path, Path | None]]) -> None:
    for path, backup in reversed(placed):
        if backup is not None:
            os.replace(backup, path)
        else:
            path.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write one file atomically (see :func:`write_files_atomically`)."""
    write_files_atomically({path: data})


def dump_json_bytes(data: Mapping[str, Any]) -> bytes:
    """JSON as the original wrote it: 2-space indent, UTF-8, no trailing newline."""
    return json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False).encode("utf-8")


_LATEST = "run-latest"
_STAMP_PREFIX = "timestamp-"


def _stamp(now: datetime) -> str:
    return now.strftime("%Y%m%d-%H%M")


def _write_stamp(folder: Path, now: datetime) -> None:
    (folder / f"{_STAMP_PREFIX}{_stamp(now)}").write_text(
        f"Experiment started: {now.strftime('%Y-%m-%d %H:%M:%S')}\n", encoding="utf-8"
    )


def _free_name(base: Path, name: str) -> Path:
    """``base/name``, or a unique ``base/name-...`` when that exists: never overwrite a run."""
    target = base / name
    if target.exists():
        target = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
        target.rmdir()
    return target


def _rotate(base: Path, now: datetime) -> None:
    """Move ``run-latest`` to ``run-<its stamp>`` (``run-<now>-rotated`` without a stamp)."""
    latest = base / _LATEST
    if not latest.exists():
        return
    stamps = sorted(p.name for p in latest.iterdir() if p.name.startswith(_STAMP_PREFIX))
    name = f"run-{stamps[0][len(_STAMP_PREFIX) :]}" if stamps else f"run-{_stamp(now)}-rotated"
    target = _free_name(base, name)
    log.info("rotating %s to %s", latest, target.name)
    latest.rename(target)


def setup_run_latest_directory(
    script_dir: str | os.PathLike[str], now_fn: Callable[[], datetime] = datetime.now
) -> str:
    """Create ``script_dir/run-latest``, rotating an existing one out of the way.

    The old directory becomes ``run-<stamp>`` from its ``timestamp-<stamp>`` file, or
    ``run-<now>-rotated`` if it has none. The new one gets a fresh timestamp file.
    """
    base = Path(script_dir)
    now = now_fn()
    _rotate(base, now)
    latest = base / _LATEST
    latest.mkdir(parents=True, exist_ok=True)
    _write_stamp(latest, now)
    return str(latest)


@dataclass
class RunStage:
    """A run's own folder while it runs; ``final`` is where its files are afterwards.

    The run sets ``succeeded`` (and ``reason`` when it did not) before the block ends.
    """

    folder: Path
    final: Path
    succeeded: bool = False
    reason: str = ""


@contextlib.contextmanager
def staged_run_latest(
    script_dir: str | os.PathLike[str], now_fn: Callable[[], datetime] = datetime.now
) -> Iterator[RunStage]:
    """A fresh folder for one run that becomes ``script_dir/run-latest`` only if it succeeds.

    Until then the previous ``run-latest`` stays where it is: on success it rotates as
    :func:`setup_run_latest_directory` rotates it and the new run takes its place. A run that
    fails or is interrupted leaves no trace when it wrote nothing, and otherwise its files in
    ``run-<stamp>-failed`` with a ``FAILED.txt`` that says why.
    """
    base = Path(script_dir)
    now = now_fn()
    folder = Path(tempfile.mkdtemp(prefix=f".run-{_stamp(now)}-", suffix=".partial", dir=base))
    _write_stamp(folder, now)
    stage = RunStage(folder, folder)
    try:
        yield stage
    except BaseException as exc:
        reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else repr(exc)
        _keep_failed(base, stage, now, reason)
        raise
    if stage.succeeded:
        _rotate(base, now)
        stage.final = base / _LATEST
        folder.rename(stage.final)
    else:
        _keep_failed(base, stage, now, stage.reason or "the run did not succeed")


def _keep_failed(base: Path, stage: RunStage, now: datetime, reason: str) -> None:
    outputs = [p for p in stage.folder.iterdir() if not p.name.startswith(_STAMP_PREFIX)]
    if not outputs:
        shutil.rmtree(stage.folder, ignore_errors=True)
        stage.final = base / _LATEST
        return
    (stage.folder / "FAILED.txt").write_text(f"{reason}\n", encoding="utf-8")
    stage.final = _free_name(base, f"run-{_stamp(now)}-failed")
    stage.folder.rename(stage.final)
    log.warning("this run failed (%s); its files are in %s", reason, stage.final)
