"""lenscheck: a logit-lens pipeline and pytest plugin that flags behaviour drift.

"The original pipeline" throughout (README, docstrings) is the research script lenscheck grew
out of: see the README's section "The original pipeline". Its public function names stay
importable from here.
"""

from __future__ import annotations

__version__ = "0.1.0"

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
