"""lenscheck.golden.tolerances: the per-class table, cross-class rules, ini overrides."""

from __future__ import annotations

from dataclasses import fields

import pytest

from lenscheck.golden.tolerances import (
    DEFAULT_TOLERANCES,
    Tolerances,
    parse_overrides,
    tolerances_for,
)

FP32 = DEFAULT_TOLERANCES["cpu-float32"]
HALF = DEFAULT_TOLERANCES["cuda-float16"]
NAMES = sorted(f.name for f in fields(Tolerances))


def test_class_table() -> None:
    assert set(DEFAULT_TOLERANCES) == {
        "cpu-float32",
        "cuda-float32",
        "mps-float32",
        "cuda-float16",
        "cuda-bfloat16",
        "mps-float16",
        "cpu-bfloat16",
        "cpu-float16",
    }
    assert (
        Tolerances(entropy=1e-4, p_top1=1e-4, final_prob=1e-4, near_tie=1e-3, kl_consistency=1e-6)
        == FP32
    )
    assert (
        Tolerances(entropy=5e-2, p_top1=2e-2, final_prob=2e-2, near_tie=2e-2, kl_consistency=1e-2)
        == HALF
    )
    for cls, tol in DEFAULT_TOLERANCES.items():
        assert tol == (FP32 if cls.endswith("float32") else HALF), cls
    # Every half-precision tolerance is looser than every fp32 one.
    assert all(getattr(HALF, n) > getattr(FP32, n) for n in NAMES)


@pytest.mark.parametrize(
    ("cls", "expected"),
    [("cpu-float32", FP32), ("xpu-float32", FP32), ("xpu-float16", HALF), ("npu-bfloat16", HALF)],
)
def test_same_class_and_unknown_classes(cls: str, expected: Tolerances) -> None:
    assert tolerances_for(cls, cls) == (expected, f"{cls} tolerances")


def test_cross_class_uses_the_looser_of_both() -> None:
    tol, note = tolerances_for("cpu-float32", "cpu-bfloat16")
    assert tol == HALF == FP32.loosest(HALF) == HALF.loosest(FP32)
    assert note == (
        "cross-class tolerances (golden cpu-float32, run cpu-bfloat16: the looser of both)"
    )
    # Symmetric: a bf16 golden read by an fp32 run.
    assert tolerances_for("cuda-bfloat16", "cpu-float32")[0] == HALF


def test_cross_device_float32_gets_kernel_slack() -> None:
    tol, note = tolerances_for("cpu-float32", "cuda-float32")
    assert tol == Tolerances(
        entropy=1e-3, p_top1=1e-3, final_prob=1e-3, near_tie=5e-3, kl_consistency=1e-5
    )
    assert "golden cpu-float32, run cuda-float32" in note
    assert all(getattr(tol, n) > getattr(FP32, n) for n in NAMES)


def test_loosest_is_fieldwise() -> None:
    a = Tolerances(1, 0.1, 5, 0, 2)
    b = Tolerances(0.5, 0.2, 5, 1, 1)
    assert a.loosest(b) == Tolerances(1, 0.2, 5, 1, 2)


def test_overrides_apply_to_their_class_only() -> None:
    overrides = {"cpu-float32": {"entropy": 0.5}, "cuda-float16": {"p_top1": 0.9}}
    tol, _ = tolerances_for("cpu-float32", "cpu-float32", overrides)
    assert tol.entropy == 0.5 and tol.p_top1 == FP32.p_top1
    # Tightening works as well as loosening.
    tight, _ = tolerances_for("cpu-float32", "cpu-float32", {"cpu-float32": {"entropy": 1e-9}})
    assert tight.entropy == 1e-9
    # Cross-class: each side's overrides, then the looser.
    cross, _ = tolerances_for("cpu-float32", "cuda-float16", overrides)
    assert (cross.entropy, cross.p_top1) == (0.5, 0.9)


def test_parse_overrides() -> None:
    lines = [
        "cpu-float32 entropy=1e-3 p_top1=2e-4",
        "",
        "   ",
        "cuda-float16   near_tie=0.05",
        "cpu-float32 final_prob=0",
    ]
    assert parse_overrides(lines) == {
        "cpu-float32": {"entropy": 1e-3, "p_top1": 2e-4, "final_prob": 0.0},
        "cuda-float16": {"near_tie": 0.05},
    }
    assert parse_overrides([]) == {}


@pytest.mark.parametrize(
    "line",
    [
        "cpu-float32 entropy",  # no '='
        "cpu-float32 speed=1",  # unknown field
        "cpu-float32 entropy=fast",  # not a number
        "cpu-float32 entropy=-1",  # negative
        "cpu-float32 entropy=nan",
        "entropy=1e-3",  # no class: used to be silently ignored
        "cpu-float32",  # nothing to override: used to be silently ignored
    ],
)
def test_parse_overrides_errors_name_the_expected_format(line: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_overrides(["cpu-float32 entropy=1", line])
    assert str(info.value) == (
        "lens_tolerances: expected 'CLASS FIELD=VALUE' with FIELD one of "
        f"{', '.join(NAMES)} and VALUE a number >= 0, got {line!r}"
    )
