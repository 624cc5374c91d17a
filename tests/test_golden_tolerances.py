"""lenscheck.golden.tolerances: the per-class table, cross-class rules, ini overrides."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from lenscheck.golden.tolerances import (
    CROSS_DTYPE,
    DEFAULT_TOLERANCES,
    Tolerances,
    kl_tolerance,
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
        Tolerances(
            entropy=4e-4,
            p_top1=1.5e-4,
            final_prob=1e-4,
            near_tie=1e-3,
            kl_consistency=5e-6,
            rank_rel=0.02,
            raw_entropy=1.5e-3,
            raw_p=1e-3,
            logit=1e-3,
            jaccard=0.03,
            raw_divergence_rel=3e-4,
        )
        == FP32
    )
    assert (
        Tolerances(
            entropy=5e-2,
            p_top1=2e-2,
            final_prob=2e-2,
            near_tie=2e-2,
            kl_consistency=1e-2,
            rank_rel=0.5,
        )
        == HALF
    )
    for cls, tol in DEFAULT_TOLERANCES.items():
        assert tol == (FP32 if cls.endswith("float32") else HALF), cls
    # Same-class float32 allows no outlier at all.
    assert (FP32.outlier_fraction, FP32.entropy_cap, FP32.p_cap) == (0.0, 0.0, 0.0)


def test_the_measured_cross_dtype_spread_is_pinned() -> None:
    """The values docs/tolerances.md derives (benchmarks/calibrate_tolerances.py)."""
    assert CROSS_DTYPE["float16"] == Tolerances(
        entropy=0.044,
        p_top1=0.0077,
        final_prob=0.011,
        near_tie=0.0029,
        kl_consistency=1e-2,
        rank_rel=0.051,
        outlier_fraction=0.31,
        entropy_cap=0.36,
        p_cap=0.11,
    )
    assert CROSS_DTYPE["bfloat16"] == Tolerances(
        entropy=0.39,
        p_top1=0.064,
        final_prob=0.051,
        near_tie=0.025,
        kl_consistency=1e-2,
        rank_rel=0.4,
        outlier_fraction=0.17,
        entropy_cap=2.0,
        p_cap=1.0,
    )
    doc = (Path(__file__).resolve().parents[1] / "docs" / "tolerances.md").read_text()
    assert "| float16 | 0.044 (0.36) | 0.0077 (0.11) | 0.011 | 0.0029 | 0.051 | 31% |" in doc
    assert "| bfloat16 | 0.39 (2) | 0.064 (1) | 0.051 | 0.025 | 0.4 | 17% |" in doc


@pytest.mark.parametrize(
    ("cls", "expected"),
    [("cpu-float32", FP32), ("xpu-float32", FP32), ("xpu-float16", HALF), ("npu-bfloat16", HALF)],
)
def test_same_class_and_unknown_classes(cls: str, expected: Tolerances) -> None:
    assert tolerances_for(cls, cls) == (expected, f"{cls} tolerances")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_across_dtypes_the_measured_spread(dtype: str) -> None:
    tol, note = tolerances_for("cpu-float32", f"cuda-{dtype}")
    assert tol == FP32.loosest(HALF).loosest(CROSS_DTYPE[dtype])
    assert note == (
        f"cross-class tolerances (golden cpu-float32, run cuda-{dtype}: the looser of both)"
    )
    # Symmetric: a half-precision golden read by an fp32 run.
    assert tolerances_for(f"cuda-{dtype}", "cpu-float32")[0] == tol
    # Half precision on another device: bounded by the same spread.
    assert tolerances_for(f"cpu-{dtype}", f"cuda-{dtype}")[0] == HALF.loosest(CROSS_DTYPE[dtype])
    # float16 against bfloat16: the looser spread of both.
    both, _ = tolerances_for("cuda-float16", "cuda-bfloat16")
    assert both == HALF.loosest(CROSS_DTYPE["float16"]).loosest(CROSS_DTYPE["bfloat16"])


def test_cross_device_float32_gets_kernel_slack() -> None:
    tol, note = tolerances_for("cpu-float32", "cuda-float32")
    assert tol == Tolerances(
        entropy=1e-3,
        p_top1=1e-3,
        final_prob=1e-3,
        near_tie=5e-3,
        kl_consistency=1e-5,
        rank_rel=0.05,
        raw_entropy=4e-3,
        raw_p=7e-3,
        # The cross-device class derives its logit and Jaccard tolerances (10x entropy,
        # 4x rank): the looser of those and float32's calibrated ones.
        logit=1e-2,
        jaccard=0.2,
        divergence_rel=2e-4,
        raw_divergence_rel=1e-3,
    )
    assert "golden cpu-float32, run cuda-float32" in note
    assert tol.outlier_fraction == 0.0  # float32 never allows outliers


def test_loosest_is_fieldwise() -> None:
    a = Tolerances(1, 0.1, 5, 0, 2, rank_rel=0.5, outlier_fraction=0.0, p_cap=1.0)
    b = Tolerances(0.5, 0.2, 5, 1, 1, rank_rel=0.1, outlier_fraction=0.2, entropy_cap=3.0)
    assert a.loosest(b) == Tolerances(
        1, 0.2, 5, 1, 2, rank_rel=0.5, outlier_fraction=0.2, entropy_cap=3.0, p_cap=1.0
    )


def test_rank_slack_keeps_small_ranks_exact() -> None:
    tol = Tolerances(1, 1, 1, 1, 1, rank_rel=0.4)
    assert [tol.rank_slack(r) for r in (1, 2, 3, 5, 100)] == [0, 0, 1, 2, 40]


def test_kl_tolerance_per_dtype() -> None:
    assert kl_tolerance("torch.float32") == kl_tolerance("float64") == 5e-6
    assert kl_tolerance("torch.bfloat16") == kl_tolerance("float16") == 1e-2


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


@pytest.mark.parametrize("point", ["next-ln1", "final", "raw"])
def test_the_raw_point_has_its_own_looser_tolerances(point: str) -> None:
    """The raw decoding point reads entropies and probabilities under raw_entropy / raw_p,
    never tighter than the normed ones; the other fields are those of every point."""
    tol = FP32.for_point(point)
    if point == "raw":
        assert (tol.entropy, tol.p_top1) == (FP32.raw_entropy, FP32.raw_p)
        assert FP32.raw_entropy > FP32.entropy and FP32.raw_p > FP32.p_top1
    else:
        assert tol == FP32
    assert tol.final_prob == FP32.final_prob and tol.rank_rel == FP32.rank_rel
    # A half-precision class sets no raw fields: its normed tolerances hold at raw.
    assert HALF.for_point("raw") == HALF


def test_a_golden_from_another_cpu_instruction_set_gets_the_cross_device_slack() -> None:
    """Two CPUs whose torch kernels differ (AVX-512 and AVX2) round float32 differently:
    embedded-gemma3 moved 5e-4 bits between them, over the same-kernel 4e-4."""
    from lenscheck.golden.tolerances import kernels_of, tolerances_for

    same, note = tolerances_for("cpu-float32", "cpu-float32", kernels=("AVX2", "AVX2"))
    assert (same.entropy, note) == (4e-4, "cpu-float32 tolerances")
    unknown, _ = tolerances_for("cpu-float32", "cpu-float32", kernels=(None, "AVX2"))
    assert unknown == same  # a golden that does not say keeps the tight tolerances
    cross, note = tolerances_for("cpu-float32", "cpu-float32", kernels=("AVX512", "AVX2"))
    assert (cross.entropy, cross.p_top1, cross.divergence_rel) == (1e-3, 1e-3, 2e-4)
    assert note.startswith("cpu-float32 tolerances across CPU kernels (golden AVX512, run AVX2")
    # An override still applies on top.
    loose, _ = tolerances_for(
        "cpu-float32", "cpu-float32", {"cpu-float32": {"entropy": 5e-3}}, ("AVX512", "AVX2")
    )
    assert loose.entropy == 5e-3
    # Other classes are not CPU runs of float32 kernels' noise: no slack from this rule.
    half, _ = tolerances_for("cpu-bfloat16", "cpu-bfloat16", kernels=("AVX512", "AVX2"))
    assert half == tolerances_for("cpu-bfloat16", "cpu-bfloat16")[0]
    assert kernels_of({"environment": {"cpu_kernels": "AVX2"}}) == "AVX2"
    assert kernels_of({"environment": {}}) is None and kernels_of({}) is None


def test_tolerances_between_two_documents_read_their_classes_and_kernels() -> None:
    from lenscheck.golden.tolerances import own_class_note, tolerances_between, tolerances_for

    def doc(cls: str, kernels: str | None) -> dict[str, object]:
        return {"class": cls, "environment": {"cpu_kernels": kernels} if kernels else {}}

    assert tolerances_between(doc("cpu-float32", "AVX512"), doc("cpu-float32", "AVX2")) == (
        tolerances_for("cpu-float32", "cpu-float32", kernels=("AVX512", "AVX2"))
    )
    same = tolerances_between(doc("cpu-float32", "AVX2"), doc("cpu-float32", "AVX2"))
    assert same[1] == own_class_note("cpu-float32")
    assert tolerances_between(doc("cpu-float32", None), doc("cuda-float32", None)) == (
        tolerances_for("cpu-float32", "cuda-float32")
    )
