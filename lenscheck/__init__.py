"""lenscheck: a logit-lens pipeline and pytest plugin that flags behaviour drift.

"The original pipeline" throughout (README, docstrings) is the research script lenscheck grew
out of: see the README's section "The original pipeline". Its public function names stay
importable from here.

Importing the package imports nothing else: each name below loads its module on first use
(PEP 562), so the pytest plugin, which every pytest session with lenscheck installed imports,
costs nothing until a lens option is given.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lenscheck._version import __version__

if TYPE_CHECKING:
    from lenscheck.artifacts import setup_run_latest_directory
    from lenscheck.backends.hooks import attach_residual_hooks, build_cache_hook, detach_hooks
    from lenscheck.collapse import detect_copy_collapse, is_semantic_top1, summarize_collapse
    from lenscheck.config import LensConfig
    from lenscheck.device import choose_dtype, should_auto_promote_unembed
    from lenscheck.norms import (
        UnsupportedNormError,
        apply_norm_or_skip,
        detect_model_architecture,
        get_correct_norm_module,
    )
    from lenscheck.numerics import bits_entropy_from_logits, kl_bits, safe_cast_for_unembed
    from lenscheck.schema import read_csv, validate_csv, write_csv_files

__all__ = [
    "LensConfig",
    "UnsupportedNormError",
    "__version__",
    "apply_norm_or_skip",
    "attach_residual_hooks",
    "bits_entropy_from_logits",
    "build_cache_hook",
    "choose_dtype",
    "detach_hooks",
    "detect_copy_collapse",
    "detect_model_architecture",
    "get_correct_norm_module",
    "is_semantic_top1",
    "kl_bits",
    "read_csv",
    "safe_cast_for_unembed",
    "setup_run_latest_directory",
    "should_auto_promote_unembed",
    "summarize_collapse",
    "validate_csv",
    "write_csv_files",
]

#: Which module each public name lives in.
_HOME = {
    "setup_run_latest_directory": "artifacts",
    "attach_residual_hooks": "backends.hooks",
    "build_cache_hook": "backends.hooks",
    "detach_hooks": "backends.hooks",
    "detect_copy_collapse": "collapse",
    "is_semantic_top1": "collapse",
    "summarize_collapse": "collapse",
    "LensConfig": "config",
    "choose_dtype": "device",
    "should_auto_promote_unembed": "device",
    "UnsupportedNormError": "norms",
    "apply_norm_or_skip": "norms",
    "detect_model_architecture": "norms",
    "get_correct_norm_module": "norms",
    "bits_entropy_from_logits": "numerics",
    "kl_bits": "numerics",
    "safe_cast_for_unembed": "numerics",
    "read_csv": "schema",
    "validate_csv": "schema",
    "write_csv_files": "schema",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'lenscheck' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lenscheck.{home}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
