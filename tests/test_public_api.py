"""The seed's API stays importable from ``lenscheck`` with the seed's parameter names."""

from __future__ import annotations

import importlib
import inspect
from datetime import datetime
from typing import Any

import pytest

import lenscheck

P = inspect.Parameter
POS = P.POSITIONAL_OR_KEYWORD
KW = P.KEYWORD_ONLY
EMPTY = P.empty

# name -> [(parameter, kind, default)], exactly as the seed's callers use them
SEED_API: dict[str, list[tuple[str, Any, Any]]] = {
    "apply_norm_or_skip": [("residual", POS, EMPTY), ("norm_module", POS, EMPTY)],
    "detect_model_architecture": [("model", POS, EMPTY)],
    "get_correct_norm_module": [
        ("model", POS, EMPTY),
        ("layer_idx", POS, EMPTY),
        ("probe_after_block", POS, True),
    ],
    "bits_entropy_from_logits": [("logits", POS, EMPTY)],
    "safe_cast_for_unembed": [
        ("resid", POS, EMPTY),
        ("W_U", POS, EMPTY),
        ("force_fp32_unembed", KW, False),
    ],
    "write_csv_files": [
        ("json_data", POS, EMPTY),
        ("csv_filepath", POS, EMPTY),
        ("pure_csv_filepath", POS, EMPTY),
        ("top_k_verbose", POS, EMPTY),
    ],
    "detect_copy_collapse": [
        ("logits", POS, EMPTY),
        ("prompt_token_ids", POS, EMPTY),
        ("copy_threshold", KW, EMPTY),
        ("copy_margin", KW, EMPTY),
        ("entropy_bits", KW, None),
        ("entropy_fallback_threshold", KW, 1.0),
    ],
    "is_semantic_top1": [("top1_text", POS, EMPTY), ("ground_truth", POS, EMPTY)],
    "choose_dtype": [("device", POS, EMPTY), ("model_id", POS, EMPTY)],
    "should_auto_promote_unembed": [("compute_dtype", POS, EMPTY)],
    "build_cache_hook": [("cache_dict", POS, EMPTY)],
    "attach_residual_hooks": [("model", POS, EMPTY), ("cache_hook", POS, EMPTY)],
    "detach_hooks": [("handles", POS, EMPTY)],
    "setup_run_latest_directory": [("script_dir", POS, EMPTY), ("now_fn", POS, datetime.now)],
}


@pytest.mark.parametrize("name", sorted(SEED_API))
def test_seed_function_signature(name: str) -> None:
    fn = getattr(lenscheck, name)
    assert callable(fn)
    params = inspect.signature(fn).parameters
    got = [(p.name, p.kind, p.default) for p in params.values()]
    assert got == SEED_API[name]


@pytest.mark.parametrize("name", sorted(SEED_API))
def test_seed_names_are_public(name: str) -> None:
    assert name in lenscheck.__all__
    module = importlib.import_module(getattr(lenscheck, name).__module__)
    assert module.__name__.startswith("lenscheck.")
    assert getattr(module, name) is getattr(lenscheck, name)


def test_every_name_in_all_exists() -> None:
    assert len(lenscheck.__all__) == len(set(lenscheck.__all__))
    missing = [n for n in lenscheck.__all__ if not hasattr(lenscheck, n)]
    assert missing == []
    namespace: dict[str, Any] = {}
    exec("from lenscheck import *", namespace)  # the star import users write
    assert set(lenscheck.__all__) <= set(namespace)


def test_unsupported_norm_error_is_a_type_error() -> None:
    assert issubclass(lenscheck.UnsupportedNormError, TypeError)


def test_version_is_a_string() -> None:
    assert isinstance(lenscheck.__version__, str) and lenscheck.__version__.count(".") >= 1


def test_strategies_module_exports() -> None:
    strategies = importlib.import_module("lenscheck.strategies")
    assert sorted(strategies.__all__) == strategies.__all__
    assert [n for n in strategies.__all__ if not hasattr(strategies, n)] == []
    for name in ("residuals", "finite_logits", "norm_modules", "csv_token_strings"):
        assert name in strategies.__all__
