"""Invariants every lens run must satisfy, golden or not."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lenscheck.plugin.session import LensRun

__all__ = ["check_invariants"]

_MASS_TOL = 1e-6


def _mass_problems(lens_run: LensRun) -> list[str]:
    from lenscheck.schema import rest_mass

    problems = []
    for rec in lens_run.records + lens_run.pure_records:
        listed = sum(p for _, p in rec["topk"])
        total = listed + rest_mass(p for _, p in rec["topk"])
        if listed > 1 + _MASS_TOL or abs(total - 1.0) > _MASS_TOL:
            problems.append(
                f"layer {rec['layer']} pos {rec['pos']}: listed probabilities "
                f"{listed!r} + rest_mass do not sum to 1"
            )
    return problems[:5]


def _norm_problems(lens_run: LensRun) -> list[str]:
    import torch

    from lenscheck.norms import apply_norm_or_skip, lens_norm_modules, unwrap_norm

    backend = lens_run.run.backend
    residuals = lens_run.residuals()
    problems = []
    with torch.no_grad():
        for layer, (resid, module) in enumerate(zip(residuals, lens_norm_modules(backend.stack))):
            if module is None:
                continue
            ours, theirs = apply_norm_or_skip(resid, module), unwrap_norm(module)(resid)
            tol = 1e-5 if resid.dtype == torch.float32 else 1e-2
            if not torch.allclose(ours.float(), theirs.float(), rtol=tol, atol=tol):
                err = float((ours.float() - theirs.float()).abs().max())
                problems.append(
                    f"layer {layer}: re-applied {type(unwrap_norm(module)).__name__} "
                    f"differs from the module by {err:.3g}"
                )
    return problems


def check_invariants(lens_run: LensRun) -> list[str]:
    """Every violated invariant, as readable lines (empty when all hold)."""
    from lenscheck.selftest import kl_tolerance_bits

    llc = lens_run.diagnostics["last_layer_consistency"]
    tol = kl_tolerance_bits(lens_run.run.backend.dtype)
    problems = []
    if not llc["kl_bits_max"] < tol:
        problems.append(f"last-layer KL(model || lens) = {llc['kl_bits_max']:.3g} bits >= {tol:g}")
    if not llc["top1_agree"]:
        problems.append("the lens' last-layer top-1 differs from the model's own")
    return problems + _norm_problems(lens_run) + _mass_problems(lens_run)
