"""The on-disk model cache: where provisioned checkpoints live and how they get there.

Provisioning (de-quantizing the embedded GGUF, building a synthetic model) is slow enough
that pytest-xdist workers or parallel CLI runs will race for it. Every checkpoint is therefore
built in a private temporary directory next to its final place and renamed into place under
a file lock, with a ``.complete`` marker written last, so a reader sees either nothing or a
finished directory, never a half-written one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["COMPLETE_MARKER", "atomic_build_dir", "cache_root", "is_complete"]

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
    import platformdirs  # cheap, but only needed here

    return Path(platformdirs.user_cache_dir("lenscheck"))


def is_complete(path: Path) -> bool:
    """Return True when ``path`` is a directory that a finished build left behind."""
    return (path / COMPLETE_MARKER).is_file()


def atomic_build_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Make sure ``final`` exists as a complete directory, running ``build`` at most once.

    ``build`` receives an empty temporary directory on the same filesystem as ``final`` and
    must fill it. Idempotent (a complete ``final`` is returned untouched) and race-safe:
    concurrent callers serialize on ``<final>.lock`` and the loser of the race finds the
    winner's directory on its recheck. A failing ``build`` leaves no trace but the lock file.
    """
    final = Path(final)
    if is_complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(final.with_name(final.name + ".lock"))):
        # Recheck: another process may have finished while we waited for the lock.
        if is_complete(final):
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
        (tmp / COMPLETE_MARKER).write_text("ok\n", encoding="utf-8")
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
