"""Refusing non-finite numbers, naming where they appeared and the way out."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from lenscheck.numerics import check_finite_logits

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import Capture

__all__ = [
    "OVERFLOW_FIX",
    "NonFiniteResidualError",
    "check_capture_finite",
    "diagnose_nan_entropy",
    "overflow",
]

OVERFLOW_FIX = (
    "fp16 overflow is the usual cause: rerun with --dtype bfloat16 or float32 "
    "(pytest: --lens-dtype)"
)


class NonFiniteResidualError(FloatingPointError):
    """A residual holds NaN or inf (in practice: fp16 overflow)."""


def overflow(logits: torch.Tensor) -> torch.Tensor:
    """Where ``logits`` hold NaN or +inf; -inf is a legitimate mask (a banned id), not an
    overflow."""
    import torch

    return torch.isnan(logits) | torch.isposinf(logits)


def check_capture_finite(capture: Capture, where: str, dtype: torch.dtype) -> None:
    """The residuals first (naming the first bad layer), then the model's own logits
    (``dtype``: the backend's compute dtype, which the logits came out of)."""
    import torch

    for layer, resid in enumerate(capture.residuals):
        if not bool(torch.isfinite(resid).all()):
            kind = "NaN" if bool(torch.isnan(resid).any()) else "inf"
            raise NonFiniteResidualError(
                f"{where}residual at lens layer {layer} contains {kind} (dtype {resid.dtype}); "
                + OVERFLOW_FIX
            )
    if bool(overflow(capture.logits).any()):
        raise NonFiniteResidualError(
            f"{where}the model's own logits are not finite though every residual is (dtype "
            f"{dtype}): the overflow is in its final norm or "
            f"unembedding; {OVERFLOW_FIX}"
        )


def diagnose_nan_entropy(
    logits: torch.Tensor, start: int, width: int, lens_where: str, dtype: torch.dtype
) -> NoReturn:
    """Raise for a chunk of lens logits (rows from ``start``) whose entropy came out NaN:
    name the layer that overflowed (a raw residual in half precision) and the lens
    (``decoding point raw``)."""
    bad = overflow(logits)
    if not bool(bad.any()):
        check_finite_logits(logits)  # a row of only -inf: the general message
        # A NaN entropy takes a NaN or +inf logit or an all -inf row: one of them raised.
        raise AssertionError
    row = int(bad.nonzero()[0, 0])
    raise NonFiniteResidualError(
        f"the lens logits of layer {(start + row) // width} are not finite ({lens_where}, "
        f"unembedding in {dtype}): the residual overflows it; rerun with "
        "--fp32-unembed, or --dtype bfloat16 or float32 (pytest: --lens-dtype)"
    )
