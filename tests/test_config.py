"""lenscheck.config.LensConfig: defaults from the spec, validation naming the field."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from lenscheck.config import LensConfig
from lenscheck.prompts import CONTEXT_PROMPT, GROUND_TRUTH, TEST_PROMPTS


def test_defaults_follow_the_behaviour_spec() -> None:
    cfg = LensConfig()
    assert (cfg.copy_threshold, cfg.copy_margin) == (0.90, 0.05)
    assert (cfg.top_k_record, cfg.top_k_verbose) == (5, 20)
    assert (
        cfg.prompt
        == CONTEXT_PROMPT
        == ("Give the city name only, plain text. The capital of Germany is called simply")
    )
    assert cfg.ground_truth == GROUND_TRUTH == "Berlin"
    assert cfg.test_prompts == TEST_PROMPTS and len(cfg.test_prompts) == 14
    assert (cfg.device, cfg.dtype, cfg.backend) == ("auto", "auto", "transformers")
    assert cfg.fp32_unembed is False and cfg.trust_remote_code is False


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"copy_threshold": 1.5}, ValueError, "copy_threshold must be in \\[0, 1\\], got 1.5"),
        ({"copy_threshold": -0.1}, ValueError, "copy_threshold"),
        ({"copy_threshold": float("nan")}, ValueError, "copy_threshold"),
        ({"copy_threshold": "0.9"}, TypeError, "copy_threshold must be a number"),
        ({"copy_threshold": True}, TypeError, "copy_threshold"),
        ({"copy_margin": 2}, ValueError, "copy_margin must be in \\[0, 1\\], got 2"),
        ({"copy_margin": None}, TypeError, "copy_margin"),
        ({"top_k_record": 0}, ValueError, "top_k_record must be >= 1, got 0"),
        ({"top_k_verbose": -5}, ValueError, "top_k_verbose must be >= 1"),
        ({"top_k_verbose": 2.0}, TypeError, "top_k_verbose must be an integer"),
        (
            {"top_k_record": 1, "top_k_verbose": 1},
            ValueError,
            "top_k_verbose must be >= 2, got 1: the copy-collapse rule",
        ),
        (
            {"top_k_record": 21},
            ValueError,
            "top_k_record \\(21\\) must not exceed top_k_verbose \\(20\\)",
        ),
        ({"backend": "jax"}, ValueError, "backend must be one of transformers, transformer-lens"),
        ({"prompt": "   "}, ValueError, "prompt is empty"),
        ({"ground_truth": ""}, ValueError, "ground_truth is empty"),
        (
            {"device": "tpu"},
            ValueError,
            "device must be one of auto, cuda, mps, cpu or cuda:N, got 'tpu'",
        ),
        (
            {"dtype": "int4"},
            ValueError,
            "dtype must be one of auto, float32, float16, bfloat16, got 'int4'",
        ),
    ],
)
def test_invalid_values_raise_naming_the_field(
    changes: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        LensConfig(**changes)
    with pytest.raises(error, match=match):
        LensConfig().evolve(**changes)  # evolve validates too


@pytest.mark.parametrize(
    "changes",
    [
        {"copy_threshold": 0.0, "copy_margin": 1.0},
        {"copy_threshold": 1, "copy_margin": 0},
        {"top_k_record": 20, "top_k_verbose": 20},
        {"top_k_record": 1, "top_k_verbose": 2},
        {"device": "cuda:1", "dtype": "bf16"},
        {"device": "mps", "dtype": "float16"},
        {"device": "cpu", "dtype": "float32"},
        {"backend": "transformer-lens"},
    ],
)
def test_valid_values_are_accepted(changes: dict[str, Any]) -> None:
    cfg = LensConfig(**changes)
    canonical = {"bf16": "bfloat16"}  # the config holds canonical names
    for key, value in changes.items():
        assert getattr(cfg, key) == canonical.get(value, value)


def test_config_is_frozen_and_evolve_copies() -> None:
    cfg = LensConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.copy_threshold = 0.5  # type: ignore[misc]
    changed = cfg.evolve(copy_threshold=0.8, device="cpu")
    assert (changed.copy_threshold, changed.device) == (0.8, "cpu")
    assert (cfg.copy_threshold, cfg.device) == (0.9, "auto")
    assert changed.evolve(copy_threshold=0.9, device="auto") == cfg
