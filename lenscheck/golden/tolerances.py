"""How far a run may move from its golden before it counts as drift, per class."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from lenscheck.vocab import RAW

__all__ = [
    "CROSS_DTYPE",
    "DEFAULT_TOLERANCES",
    "JACCARD_PER_RANK",
    "LOGIT_PER_ENTROPY",
    "Tolerances",
    "kernels_of",
    "kl_tolerance",
    "own_class_note",
    "parse_overrides",
    "tolerances_between",
    "tolerances_for",
]


#: How the logit and Jaccard tolerances derive where a class has no calibrated ones.
LOGIT_PER_ENTROPY = 10.0
JACCARD_PER_RANK = 4.0


@dataclass(frozen=True)
class Tolerances:
    """How far each value may move, and how many may move further.

    ``near_tie`` is the top-1/top-2 gap under which a changed top-1 is reported as a
    near-tie instead of failing; an answer rank r may move by ``rank_rel * r`` (rounded
    down: small ranks stay exact). An entropy or probability beyond its tolerance but within
    ``entropy_cap`` / ``p_cap`` is an *outlier*, and so is a changed top-1 beyond the
    near-tie gap: up to ``outlier_fraction`` of a section's compared values may be outliers,
    otherwise every outlier of the section is drift. Float32 allows none; half precision,
    compared with float32, needs some (measured: docs/tolerances.md).

    ``raw_entropy`` / ``raw_p`` bound the entropies and probabilities read at the raw
    decoding point (the un-normalized residual unembedded), never tighter than ``entropy`` /
    ``p_top1``: the residual's rounding reaches its logits multiplied by its norm (hundreds
    in late layers), so its benign noise is far larger than a normed lens' (0: the same as
    the normed one).

    ``logit`` bounds the extended schema's logit gaps, ``jaccard`` / ``raw_jaccard`` its
    top-50 Jaccard indices (of the normed lens / involving the raw lens); 0: derived, as
    before they were calibrated, from the entropy and rank tolerances (:meth:`logit_bound`,
    :meth:`jaccard_bound`). A divergence (KL, JS: up to hundreds of bits between the raw
    and the normed lens) may move by its entropy tolerance or by ``divergence_rel`` times
    its golden value, whichever is larger (``raw_divergence_rel`` where it reads the raw
    lens: a KL(P_raw || P_norm) of 58 bits moved by 2.2e-3 under a kernel switch).
    """

    entropy: float
    p_top1: float
    final_prob: float
    near_tie: float
    kl_consistency: float
    rank_rel: float = 0.0
    outlier_fraction: float = 0.0
    entropy_cap: float = 0.0
    p_cap: float = 0.0
    raw_entropy: float = 0.0
    raw_p: float = 0.0
    logit: float = 0.0
    jaccard: float = 0.0
    raw_jaccard: float = 0.0
    divergence_rel: float = 0.0
    raw_divergence_rel: float = 0.0

    def logit_bound(self) -> float:
        """The logit gaps' tolerance: ``logit``, else ten times the entropy one (logits
        are O(10) where an entropy is O(1))."""
        return self.logit or LOGIT_PER_ENTROPY * self.entropy

    def jaccard_bound(self) -> float:
        """The top-50 Jaccard's tolerance: ``jaccard``, else four times the rank one."""
        return self.jaccard or JACCARD_PER_RANK * self.rank_rel

    def loosest(self, other: Tolerances) -> Tolerances:
        """Field-wise maximum: used when a golden comes from another class. A derived
        tolerance (0) that meets a set one counts at its derived value."""
        out = {f.name: max(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)}
        if out["logit"]:
            out["logit"] = max(self.logit_bound(), other.logit_bound())
        if out["jaccard"]:
            out["jaccard"] = max(self.jaccard_bound(), other.jaccard_bound())
        return Tolerances(**out)

    def for_point(self, point: str) -> Tolerances:
        """The tolerances of values read at decoding point ``point``: at the raw point, the
        raw entropy and probability tolerances (when looser) in place of the normed ones."""
        if point != RAW:
            return self
        return replace(
            self,
            entropy=max(self.entropy, self.raw_entropy),
            p_top1=max(self.p_top1, self.raw_p),
            jaccard=max(self.jaccard, self.raw_jaccard) if self.raw_jaccard else self.jaccard,
            divergence_rel=max(self.divergence_rel, self.raw_divergence_rel),
        )

    def rank_slack(self, golden: int) -> int:
        """Allowed |delta| of an answer rank whose golden value is ``golden``."""
        return int(self.rank_rel * golden)


#: Float32: at least 5x the largest difference a benign change makes (attention kernel,
#: thread count, suite composition, backend), measured by benchmarks/calibrate.py over
#: every offline model (docs/tolerances.md has the table). The raw decoding point has its
#: own, looser, entropy and probability tolerances.
_FP32 = Tolerances(
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
#: A half-precision golden and a run of the same class (same kernels): little noise.
_HALF = Tolerances(
    entropy=5e-2, p_top1=2e-2, final_prob=2e-2, near_tie=2e-2, kl_consistency=1e-2, rank_rel=0.5
)
# Same dtype on another device: kernels differ, so fp32 gets a little slack too.
# The raw point keeps the ratio to the normed tolerances that the CPU calibration measured
# (no cross-device data of our own yet).
# The same slack between two CPUs whose kernels use different instruction sets (a golden
# written with AVX-512, a run with AVX2): measured on embedded-gemma3, the model whose
# numbers move most, 5e-4 bits of entropy and 4e-5 of a KL's value (8e-4 bits of a 20-bit
# KL to the model's head); embedded (SmolLM2) moved 8e-5.
_CROSS_DEVICE_FP32 = Tolerances(
    entropy=1e-3,
    p_top1=1e-3,
    final_prob=1e-3,
    near_tie=5e-3,
    kl_consistency=1e-5,
    rank_rel=0.05,
    raw_entropy=4e-3,
    raw_p=7e-3,
    divergence_rel=2e-4,
    raw_divergence_rel=1e-3,
)
#: A half-precision run against a float32 golden (or the other way round), per half dtype:
#: derived from the measured error with a margin of 2 by benchmarks/calibrate_tolerances.py
#: (docs/tolerances.md has the data and the command). Half precision on another device is
#: bounded by the same spread (no data of our own for it yet).
CROSS_DTYPE: dict[str, Tolerances] = {
    "float16": Tolerances(
        entropy=0.044,
        p_top1=0.0077,
        final_prob=0.011,
        near_tie=0.0029,
        kl_consistency=1e-2,
        rank_rel=0.051,
        outlier_fraction=0.31,
        entropy_cap=0.36,
        p_cap=0.11,
    ),
    "bfloat16": Tolerances(
        entropy=0.39,
        p_top1=0.064,
        final_prob=0.051,
        near_tie=0.025,
        kl_consistency=1e-2,
        rank_rel=0.4,
        outlier_fraction=0.17,
        entropy_cap=2.0,
        p_cap=1.0,
    ),
}

DEFAULT_TOLERANCES: dict[str, Tolerances] = {
    "cpu-float32": _FP32,
    "cuda-float32": _FP32,
    "mps-float32": _FP32,
    "cuda-float16": _HALF,
    "cuda-bfloat16": _HALF,
    "mps-float16": _HALF,
    "cpu-bfloat16": _HALF,
    "cpu-float16": _HALF,
}


def _base(cls: str) -> Tolerances:
    return DEFAULT_TOLERANCES.get(cls, _HALF if not cls.endswith("float32") else _FP32)


def kl_tolerance(dtype: str) -> float:
    """KL (bits) allowed between two computations of one distribution in ``dtype``."""
    return (
        _FP32 if dtype.removeprefix("torch.") in ("float32", "float64") else _HALF
    ).kl_consistency


def kernels_of(doc: Mapping[str, Any]) -> str | None:
    """The CPU instruction set a golden document's run used, None where unrecorded (a GPU
    run, a golden written before lenscheck recorded it, a document built from files)."""
    value = (doc.get("environment") or {}).get("cpu_kernels")
    return None if value is None else str(value)


def own_class_note(cls: str) -> str:
    """The note of a comparison within ``cls`` that needed no slack (nothing to report)."""
    return f"{cls} tolerances"


def tolerances_between(
    golden: Mapping[str, Any],
    run: Mapping[str, Any],
    overrides: dict[str, dict[str, float]] | None = None,
) -> tuple[Tolerances, str]:
    """:func:`tolerances_for` two golden documents: their classes and CPU kernels."""
    kernels = (kernels_of(golden), kernels_of(run))
    return tolerances_for(str(golden["class"]), str(run["class"]), overrides, kernels)


def tolerances_for(
    golden_cls: str,
    run_cls: str,
    overrides: dict[str, dict[str, float]] | None = None,
    kernels: tuple[str | None, str | None] = (None, None),
) -> tuple[Tolerances, str]:
    """Tolerances for comparing a ``run_cls`` run with a ``golden_cls`` golden, and why.

    Across classes: the looser of both classes; across dtypes (or half precision across
    devices) also the measured cross-dtype spread; float32 across devices, a little slack,
    and the same slack on one CPU class when ``kernels`` (the golden's and the run's CPU
    instruction sets, None where unrecorded) are both known and differ.
    """
    overrides = overrides or {}

    def of(cls: str) -> Tolerances:
        return replace(_base(cls), **overrides.get(cls, {}))

    golden_isa, run_isa = kernels
    if golden_cls == run_cls == "cpu-float32" and None not in kernels and golden_isa != run_isa:
        return of(run_cls).loosest(_CROSS_DEVICE_FP32), (
            f"{run_cls} tolerances across CPU kernels (golden {golden_isa}, run {run_isa}: "
            "the cross-device float32 slack)"
        )
    if golden_cls == run_cls:
        return of(run_cls), own_class_note(run_cls)
    tol = of(golden_cls).loosest(of(run_cls))
    dtypes = {cls.split("-", 1)[-1] for cls in (golden_cls, run_cls)}
    if dtypes == {"float32"}:
        tol = tol.loosest(_CROSS_DEVICE_FP32)
    for dtype in dtypes & set(CROSS_DTYPE):
        tol = tol.loosest(CROSS_DTYPE[dtype])
    return tol, f"cross-class tolerances (golden {golden_cls}, run {run_cls}: the looser of both)"


def parse_overrides(lines: list[str]) -> dict[str, dict[str, float]]:
    """Parse ini lines ``CLASS FIELD=VALUE ...`` (e.g. ``cpu-float32 entropy=1e-3``)."""
    names = {f.name for f in fields(Tolerances)}
    out: dict[str, dict[str, float]] = {}
    for line in lines:
        if not line.strip():
            continue
        cls, *pairs = line.split()
        error = ValueError(
            f"lens_tolerances: expected 'CLASS FIELD=VALUE' with FIELD one of "
            f"{', '.join(sorted(names))} and VALUE a number >= 0, got {line!r}"
        )
        # A line without a class ('entropy=1e-3') or without pairs would otherwise be a no-op.
        if "=" in cls or not pairs:
            raise error
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in names:
                raise error
            try:
                number = float(value)
            except ValueError:
                raise error from None
            if not number >= 0:  # also rejects nan
                raise error
            out.setdefault(cls, {})[key] = number
    return out
