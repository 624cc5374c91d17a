"""How far a run may move from its golden before it counts as drift, per class."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

__all__ = ["DEFAULT_TOLERANCES", "Tolerances", "parse_overrides", "tolerances_for"]


@dataclass(frozen=True)
class Tolerances:
    """Absolute tolerances, widened with the golden value and the layer's depth.

    ``near_tie`` is the top-1/top-2 gap under which a changed top-1 is reported as a
    near-tie instead of failing. An entropy may move by ``(entropy + entropy_rel * H) *
    (1 + depth_gain * depth)`` bits (H the golden entropy, depth = layer / num_layers, 1
    outside the layers); a probability by ``p_top1 * (1 + depth_gain * depth)``; an answer
    rank r by ``rank_rel * r`` (rounded down: small ranks must stay exact).
    """

    entropy: float
    p_top1: float
    final_prob: float
    near_tie: float
    kl_consistency: float
    entropy_rel: float = 0.0
    depth_gain: float = 0.0
    rank_rel: float = 0.0

    def loosest(self, other: Tolerances) -> Tolerances:
        """Field-wise maximum: used when a golden comes from another class."""
        return Tolerances(
            **{f.name: max(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)}
        )

    def _depth(self, depth: float | None) -> float:
        return 1.0 + self.depth_gain * (1.0 if depth is None else depth)

    def entropy_at(self, golden: float, depth: float | None = None) -> float:
        """Allowed |delta| of an entropy whose golden value is ``golden`` bits."""
        return (self.entropy + self.entropy_rel * abs(golden)) * self._depth(depth)

    def prob_at(self, depth: float | None = None) -> float:
        """Allowed |delta| of a probability (top-1, answer, probe, temperature)."""
        return self.p_top1 * self._depth(depth)

    def rank_slack(self, golden: int) -> int:
        """Allowed |delta| of an answer rank whose golden value is ``golden``."""
        return int(self.rank_rel * golden)


_FP32 = Tolerances(
    entropy=1e-4, p_top1=1e-4, final_prob=1e-4, near_tie=1e-3, kl_consistency=1e-6, rank_rel=0.01
)
_HALF = Tolerances(
    entropy=5e-2, p_top1=2e-2, final_prob=2e-2, near_tie=2e-2, kl_consistency=1e-2, rank_rel=0.5
)
# Same dtype on another device: kernels differ, so fp32 gets a little slack too.
_CROSS_DEVICE_FP32 = Tolerances(
    entropy=1e-3, p_top1=1e-3, final_prob=1e-3, near_tie=5e-3, kl_consistency=1e-5, rank_rel=0.05
)

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


def tolerances_for(
    golden_cls: str, run_cls: str, overrides: dict[str, dict[str, float]] | None = None
) -> tuple[Tolerances, str]:
    """Tolerances for comparing a ``run_cls`` run with a ``golden_cls`` golden, and why."""
    overrides = overrides or {}

    def of(cls: str) -> Tolerances:
        return replace(_base(cls), **overrides.get(cls, {}))

    if golden_cls == run_cls:
        return of(run_cls), f"{run_cls} tolerances"
    tol = of(golden_cls).loosest(of(run_cls))
    if golden_cls.split("-")[1:] == run_cls.split("-")[1:] and run_cls.endswith("float32"):
        tol = tol.loosest(_CROSS_DEVICE_FP32)
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
