"""Where the original pipeline's reference files are: one lookup for every test module.

* :data:`PUBLISHED_DIR`: the full published run (eight models) under the project's shared
  folder, ``$LENSCHECK_SHARED_DIR`` or else ``shared/`` beside the checkout. Often absent
  (any CI that checks out only this repository).
* :data:`VENDORED_DIR`: one model's complete set (Meta-Llama-3-8B), vendored in
  ``tests/data/published-run/`` so byte-compatibility checks run everywhere.
* :func:`reference_dir`: the full set where it exists, else the vendored one.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PUBLISHED_DIR", "SHARED_ENV_VAR", "VENDORED_DIR", "reference_dir", "shared_dir"]

#: Environment variable naming the shared folder (the one holding reference/published-run/).
SHARED_ENV_VAR = "LENSCHECK_SHARED_DIR"


def shared_dir() -> Path:
    """``$LENSCHECK_SHARED_DIR`` if set, else ``shared/`` next to the repository."""
    env = os.environ.get(SHARED_ENV_VAR, "").strip()
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


PUBLISHED_DIR = shared_dir() / "reference" / "published-run"
VENDORED_DIR = Path(__file__).resolve().parent / "data" / "published-run"


def reference_dir() -> Path:
    """The full published run when present, else the vendored one-model copy."""
    return PUBLISHED_DIR if PUBLISHED_DIR.is_dir() else VENDORED_DIR
