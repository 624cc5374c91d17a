"""The on-disk model cache: where provisioned checkpoints live and how they get there.

Provisioning (de-quantizing the embedded GGUF, building a synthetic model) is slow enough
that pytest-xdist workers or parallel CLI runs will race for it. Every checkpoint is therefore
built in a private temporary directory next to its final place and renamed into place under
a file lock, with a ``.complete`` marker written last, so a reader sees either nothing or a
finished directory, never a half-written one.

Entries are keyed by what changes their file format: the major version of transformers
that wrote them (``embedded-<sha>-transformers5``). transformers 5 writes a tokenizer
config naming ``TokenizersBackend``, which 4.x cannot load, and a ``rope_parameters``
config block that 4.x would ignore, silently falling back to its default rope theta. So
one cache folder can serve environments with different transformers versions side by side:
each converts its own entry once. The ``.complete`` marker records the format, and an entry
whose marker names another format (a copied or renamed folder) is refused with
:class:`IncompatibleCacheEntry` instead of being loaded.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs
from filelock import FileLock

from lenscheck._version import __version__

__all__ = [
    "CACHE_ENV_VAR",
    "COMPLETE_MARKER",
    "IncompatibleCacheEntry",
    "atomic_build_dir",
    "cache_format",
    "cache_root",
    "entry_dir",
    "entry_info",
    "is_complete",
    "is_ready",
]

_log = logging.getLogger(__name__)

#: Name of the marker file that says a cache directory was fully built.
COMPLETE_MARKER = ".complete"

#: Environment variable that overrides the cache location.
CACHE_ENV_VAR = "LENSCHECK_CACHE"


def cache_root() -> Path:
    """Return the cache directory: ``$LENSCHECK_CACHE`` if set, else the user cache dir."""
    override = os.environ.get(CACHE_ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("lenscheck"))


class IncompatibleCacheEntry(RuntimeError):
    """A complete cache entry written in a format this environment must not load."""


def _transformers_version() -> str:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            "lenscheck's model cache needs transformers, which is not installed"
        ) from None


def cache_format() -> str:
    """The format key of cache entries this environment writes and reads: the major
    version of transformers, e.g. ``'transformers5'`` (see the module docstring)."""
    return "transformers" + _transformers_version().split(".", 1)[0]


def entry_dir(name: str, cache_dir: Path | None = None) -> Path:
    """Where entry ``name`` lives in this environment's format: ``<root>/<name>-<format>``,
    under ``cache_dir`` or, by default, :func:`cache_root`."""
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    return root / f"{name}-{cache_format()}"


def is_complete(path: Path) -> bool:
    """Return True when ``path`` is a directory that a finished build left behind."""
    return (path / COMPLETE_MARKER).is_file()


def entry_info(path: Path) -> dict[str, Any]:
    """What the ``.complete`` marker of ``path`` records (format, transformers and lenscheck
    versions); ``{}`` for a marker written before entries recorded their format."""
    try:
        info = json.loads((path / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def is_ready(path: Path) -> bool:
    """True when ``path`` is complete and in this environment's format; False when it is
    not complete (yet). Raise :class:`IncompatibleCacheEntry` for a complete entry that
    records another format, naming the folder and what to do."""
    if not is_complete(path):
        return False
    found = entry_info(path).get("format")
    wanted = cache_format()
    if found is not None and found != wanted:
        wrote = entry_info(path).get("transformers", "?")
        raise IncompatibleCacheEntry(
            f"model cache entry {path} was written by transformers {wrote} (format {found}); "
            f"this environment has transformers {_transformers_version()} (format {wanted}) "
            f"and cannot load it safely. Delete the folder (it is rebuilt on the next run) "
            f"or set {CACHE_ENV_VAR} to a separate cache folder for this environment."
        )
    return True


def _marker_text() -> str:
    info = {
        "format": cache_format(),
        "transformers": _transformers_version(),
        "lenscheck": __version__,
    }
    return json.dumps(info, sort_keys=True) + "\n"


def atomic_build_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Make sure ``final`` exists as a complete directory, running ``build`` at most once.

    ``build`` receives an empty temporary directory on the same filesystem as ``final`` and
    must fill it. Idempotent (a complete ``final`` is returned untouched) and race-safe:
    concurrent callers serialize on ``<final>.lock`` and the loser of the race finds the
    winner's directory on its recheck. A failing ``build`` leaves no trace but the lock file.
    A complete ``final`` of another format raises :class:`IncompatibleCacheEntry`.
    """
    final = Path(final)
    if is_ready(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.with_name(final.name + ".lock"))):
        # Recheck: another process may have finished while we waited for the lock.
        if is_ready(final):
            return final
        _build_and_publish(final, build)
    return final


def _build_and_publish(final: Path, build: Callable[[Path], None]) -> None:
    """Run ``build`` into a temp dir beside ``final``, mark it complete, rename it in place."""
    # Same parent directory => same filesystem => os.replace is an atomic rename.
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        build(tmp)
        # mkdtemp creates 0700; a published cache entry should be readable like any other.
        tmp.chmod(0o755)
        (tmp / COMPLETE_MARKER).write_text(_marker_text(), encoding="utf-8")
        if final.exists():
            # A leftover without a marker (e.g. a crash of an older version): we hold the
            # lock, so nobody else is using it.
            _log.warning("removing incomplete cache directory %s", final)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _log.info("provisioned %s", final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
