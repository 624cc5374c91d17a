"""``--self-test``: prove the lens is faithful on this model before any file is written.

Two checks. Normalization scaling: for the first, middle and last lens layer, the
re-applied norm and the model's own norm module give the same next-token
distribution (the original pipeline's KL check, which called a transformers-only
API on a TransformerLens model). Last-layer consistency: the lens at the last layer
reproduces the model's own final logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lenscheck.golden.tolerances import kl_tolerance
from lenscheck.norms import apply_norm_or_skip, lens_norm_modules, unwrap_norm
from lenscheck.numerics import kl_bits

# torch is imported inside run_self_test: the console script imports SelfTestError for every
# command, and `lenscheck validate`/`diff` must not import torch.
if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import LensBackend
    from lenscheck.lens import LensResult

__all__ = ["SelfTestError", "kl_tolerance_bits", "run_self_test"]


class SelfTestError(AssertionError):
    """The lens does not reproduce the model on this run; nothing should be written."""


def kl_tolerance_bits(dtype: torch.dtype) -> float:
    """KL allowed between two computations of the same distribution in ``dtype`` (the
    golden tolerances' ``kl_consistency`` of its class)."""
    return kl_tolerance(str(dtype))


def _norm_scaling_kl(backend: LensBackend, residuals: list[Any]) -> dict[str, float]:
    """KL(module || lens) of the next-token distributions, at the first, middle and last layer."""
    norms = lens_norm_modules(backend.stack)
    out = {}
    for layer in sorted({0, len(residuals) // 2, len(residuals) - 1}):
        module = norms[layer]
        if module is None:
            continue
        resid = residuals[layer]
        ours = backend.unembed(apply_norm_or_skip(resid, module))
        theirs = backend.unembed(unwrap_norm(module)(resid))
        out[str(layer)] = float(kl_bits(theirs, ours).max())
    return out


def run_self_test(backend: LensBackend, result: LensResult, residuals: list[Any]) -> dict[str, Any]:
    """The numbers of both checks; raise :class:`SelfTestError` listing every failed one."""
    import torch

    tol = kl_tolerance_bits(backend.dtype)
    with torch.no_grad():
        scaling = _norm_scaling_kl(backend, residuals)
    failures = [
        f"normalization scaling at layer {layer}: KL(module || lens) = {kl:.3g} bits, "
        f"allowed < {tol:g}"
        for layer, kl in scaling.items()
        if not kl < tol
    ]
    llc = result.diagnostics["last_layer_consistency"]
    if not llc["kl_bits_max"] < tol:
        failures.append(
            f"last-layer consistency: KL(model || lens) = {llc['kl_bits_max']:.3g} "
            f"bits, allowed < {tol:g}"
        )
    if not llc["top1_agree"]:
        failures.append("last-layer consistency: the lens' top-1 differs from the model's")
    if failures:
        raise SelfTestError(
            f"self-test failed for {backend.model_id}; no files were written:\n  "
            + "\n  ".join(failures)
        )
    return {
        "tolerance_bits": tol,
        "norm_scaling_kl_bits": scaling,
        "last_layer_kl_bits": llc["kl_bits_max"],
        "top1_agree": llc["top1_agree"],
    }
