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


# --------------------------------------------------------------------- return shapes
# What each seed function returns, called the way the seed's run.py called it: a caller of
# the original API unpacks and type-checks these, so a change of shape is a breaking change
# even when the signature above stays the same.


def _tiny_model() -> Any:
    from torch import nn

    def block() -> nn.Module:
        b = nn.Module()
        b.ln1, b.attn, b.ln2, b.mlp = (
            nn.LayerNorm(4),
            nn.Linear(4, 4),
            nn.LayerNorm(4),
            nn.Linear(4, 4),
        )
        return b

    model = nn.Module()
    model.blocks = nn.ModuleList([block(), block()])
    model.ln_final = nn.LayerNorm(4)
    return model


def _hooked_model(pos_embed: bool) -> Any:
    from types import SimpleNamespace

    class Point:
        def __init__(self) -> None:
            self.hooks: list[Any] = []

        def add_hook(self, fn: Any) -> Any:
            self.hooks.append(fn)
            return SimpleNamespace(remove=lambda: self.hooks.remove(fn))

    names = ["hook_embed", *(["hook_pos_embed"] if pos_embed else []), "blocks.0.hook_resid_post"]
    return SimpleNamespace(hook_dict={n: Point() for n in names}, cfg=SimpleNamespace(n_layers=1))


def _returns(name: str, tmp_path: Any) -> list[tuple[Any, Any]]:
    """(returned value, expected type or shape) pairs for seed function ``name``."""
    import torch

    f = getattr(lenscheck, name)
    x = torch.randn(3, 4)
    model = _tiny_model()
    if name == "apply_norm_or_skip":
        out = f(x, model.blocks[0].ln1)
        return [
            (type(out), torch.Tensor),
            (out.shape, x.shape),
            (out.dtype, x.dtype),
            (f(x, None), x),
        ]
    if name == "detect_model_architecture":
        return [(f(model), "pre_norm")]
    if name == "get_correct_norm_module":
        return [
            (f(model, 0), model.blocks[1].ln1),
            (f(model, 1), model.ln_final),
            (f(model, 0, False), model.blocks[0].ln1),
        ]
    if name == "bits_entropy_from_logits":
        return [(type(f(torch.zeros(8))), float)]
    if name == "safe_cast_for_unembed":
        w = torch.randn(4, 8, dtype=torch.float16)
        out = f(x, w)
        return [
            (type(out), torch.Tensor),
            (out.dtype, torch.float16),
            (out.shape, x.shape),
            (f(x, w.float(), force_fp32_unembed=True).dtype, torch.float32),
        ]
    if name == "write_csv_files":
        rec = {"layer": 0, "pos": 0, "token": "a", "entropy": 1.0, "topk": [["x", 0.5]]}
        pure = {**rec, "copy_collapse": False, "entropy_collapse": True, "is_answer": False}
        data = {"records": [rec], "pure_next_token_records": [pure]}
        out = f(data, tmp_path / "r.csv", tmp_path / "p.csv", 20)
        return [(out, None), ((tmp_path / "r.csv").is_file(), True)]
    if name == "detect_copy_collapse":
        logits = torch.tensor([10.0, 0.0, 0.0])
        return [(type(f(logits, [0], copy_threshold=0.9, copy_margin=0.05)), bool)]
    if name == "is_semantic_top1":
        return [(f(" Berlin", "Berlin"), True)]
    if name == "choose_dtype":
        return [(f("cpu", "gpt2"), torch.float32)]
    if name == "should_auto_promote_unembed":
        return [(f(torch.float32), True), (f(torch.float16), False)]
    if name == "build_cache_hook":
        cache: dict[str, Any] = {}
        hook = f(cache)
        from types import SimpleNamespace

        return [
            (callable(hook), True),
            (hook(x, SimpleNamespace(name="h")), None),
            (list(cache), ["h"]),
        ]
    if name == "attach_residual_hooks":
        pairs: list[tuple[Any, Any]] = []
        for pos_embed in (False, True):
            out = f(_hooked_model(pos_embed), lenscheck.build_cache_hook({}))
            handles, has_pos_embed = out
            pairs += [
                (type(out), tuple),
                (len(out), 2),
                (type(handles), list),
                (len(handles), 2 + pos_embed),
                (has_pos_embed, pos_embed),
            ]
        return pairs
    if name == "detach_hooks":
        model = _hooked_model(False)
        handles, _ = lenscheck.attach_residual_hooks(model, lenscheck.build_cache_hook({}))
        return [(f(handles), None), (handles, [])]
    if name == "setup_run_latest_directory":
        out = f(tmp_path, lambda: datetime(2026, 1, 2, 3, 4))
        return [(type(out), str), (out, str(tmp_path / "run-latest"))]
    raise AssertionError(f"no return-shape check for {name}")


@pytest.mark.parametrize("name", sorted(SEED_API))
def test_seed_function_return_shape(name: str, tmp_path: Any) -> None:
    for got, want in _returns(name, tmp_path):
        assert got is want or got == want, (name, got, want)
