"""Invariants every lens run must satisfy, golden or not, recomputed from tensors.

Nothing here trusts what the lens wrote about itself: the last-layer check runs a fresh
forward pass and decodes its last residual through the model's own final norm and
unembedding, the norm check calls each norm module, and the probability mass is read back
from the CSV bytes. The JSON's own consistency diagnostic is then checked against the
recomputation, and the records CSV's last layer against the model's own distribution.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

from lenscheck.golden.tolerances import CROSS_DTYPE
from lenscheck.norms import apply_norm_or_skip, decode_norm_modules, final_norm_module, unwrap_norm
from lenscheck.numerics import entropy_bits, kl_bits
from lenscheck.selftest import kl_tolerance_bits
from lenscheck.vocab import BOS_AUTO, NEXT_LN1, RAW

if TYPE_CHECKING:
    from lenscheck.backends.base import Capture, LensBackend
    from lenscheck.golden.payload import PromptFiles
    from lenscheck.plugin.session import LensRun
    from lenscheck.schema import CsvTable

__all__ = ["check_invariants"]

_MASS_TOL = 1e-6
_MAX_MASS_LINES = 5
#: Entropy of the last layer as the CSV says vs the model's own: a KL of 5e-6 bits (the
#: consistency bound) moves entropy far less than 1e-3 bits.
_ENTROPY_TOL, _NEAR_TIE = 1e-3, 1e-3
_NORM_TOL = 1e-5


def _mass_problems(prompt: str, tables: list[CsvTable]) -> list[str]:
    problems = []
    for table in tables:
        for row in table.rows:
            listed = sum(p for _, p in row.topk)
            if listed > 1 + _MASS_TOL or abs(listed + row.rest_mass - 1.0) > _MASS_TOL:
                problems.append(
                    f"{prompt}: {table.kind} layer {row.layer} pos {row.pos}: listed "
                    f"probabilities {listed!r} + rest_mass {row.rest_mass!r} do not sum to 1"
                )
    return problems[:_MAX_MASS_LINES]


def _module_output(module: Any, x: torch.Tensor) -> torch.Tensor:
    """The norm module's own forward, in float32 (a copy: the model's module is untouched)."""
    return copy.deepcopy(unwrap_norm(module)).float()(x).float()


def _scaled_module(module: Any, x: torch.Tensor) -> torch.Tensor:
    """A canary's reference: the module's output, scaled (the norm check must refuse it)."""
    return 1.5 * _module_output(module, x)


def _norm_problems(
    prompt: str,
    backend: LensBackend,
    residuals: list[torch.Tensor],
    point: str,
    reference: Any = _module_output,
) -> list[str]:
    """Each re-applied norm against its module (``reference``: how the module's own output
    is computed), both in float32 whatever the run's dtype: a formula slip (epsilon outside
    the square root, a lost bias) is far below half precision's rounding, but not below
    float32's."""
    problems = []
    for layer, (resid, module) in enumerate(
        zip(residuals, decode_norm_modules(backend.stack, point))
    ):
        if module is None:
            continue
        x = resid.float()
        ours = apply_norm_or_skip(x, module).float()
        theirs = reference(module, x)
        if not torch.allclose(ours, theirs, rtol=_NORM_TOL, atol=_NORM_TOL):
            err = float((ours - theirs).abs().max())
            problems.append(
                f"{prompt}: layer {layer}: re-applied {type(unwrap_norm(module)).__name__} "
                f"differs from the module by {err:.3g}"
            )
    return problems


def _consistency_problems(
    prompt: str,
    backend: LensBackend,
    residual: torch.Tensor,
    logits: torch.Tensor,
    diag: Any,
    tol: float,
) -> list[str]:
    lens = backend.unembed(apply_norm_or_skip(residual, final_norm_module(backend.stack)))
    kl_max = float(kl_bits(logits, lens).max())
    agree = bool((lens.argmax(-1) == logits.argmax(-1)).all())
    problems = []
    if not kl_max < tol:
        problems.append(f"{prompt}: last-layer KL(model || lens) = {kl_max:.3g} bits >= {tol:g}")
    if not agree:
        problems.append(f"{prompt}: the lens' last-layer top-1 differs from the model's own")
    written = diag["last_layer_consistency"]
    if not abs(float(written["kl_bits_max"]) - kl_max) <= tol or written["top1_agree"] != agree:
        problems.append(
            f"{prompt}: the JSON's last_layer_consistency (kl_bits_max "
            f"{written['kl_bits_max']!r}, top1_agree {written['top1_agree']}) differs from the "
            f"recomputation (kl_bits_max {kl_max!r}, top1_agree {agree})"
        )
    return problems


def _files_problems(
    prompt: str, backend: LensBackend, logits: torch.Tensor, files: PromptFiles
) -> list[str]:
    """The records CSV's last layer, as written, against the model's own distribution: what
    the lens wrote for the last layer must be what the model predicts there."""
    if files.records is None:
        return []
    rows = [r for r in files.records.rows if r.layer == max(x.layer for x in files.records.rows)]
    tol = _ENTROPY_TOL
    if backend.dtype not in (torch.float32, torch.float64):
        # The lens and the model round differently in half precision (norm statistics in
        # fp32, then cast; the model's own kernels): the measured half-precision spread.
        tol = CROSS_DTYPE.get(
            str(backend.dtype).removeprefix("torch."), CROSS_DTYPE["bfloat16"]
        ).entropy
    model_entropy = entropy_bits(logits).tolist()
    top = logits.argmax(-1).tolist()
    problems = []
    for row in rows:
        delta = abs(row.entropy - model_entropy[row.pos])
        model_top1 = backend.decode(int(top[row.pos]))
        near_tie = len(row.topk) > 1 and row.topk[0][1] - row.topk[1][1] < _NEAR_TIE
        if delta > tol or (row.topk[0][0] != model_top1 and not near_tie):
            problems.append(
                f"{prompt}: records CSV, last layer, pos {row.pos}: entropy {row.entropy:.6g} and "
                f"top-1 {row.topk[0][0]!r}, the model's own {model_entropy[row.pos]:.6g} and "
                f"{model_top1!r}"
            )
    return problems[:_MAX_MASS_LINES]


def _tokenization_problems(prompt: str, backend: LensBackend, files: PromptFiles) -> list[str]:
    """Under ``bos=auto`` the forward ids are what the model's own tokenizer gives for
    ``tokenizer(text)`` (special tokens it appends after the text, an EOS, left out: the lens
    reads the next token): asked of the tokenizer here, not of lenscheck's codec."""
    tokenization = files.json["diagnostics"].get("tokenization") or {}
    if tokenization.get("bos_policy") != BOS_AUTO or tokenization.get("chat_template"):
        return []
    text = files.json["prompt"]["context_prompt"]
    tokenizer = backend.codec.tokenizer
    own = [int(i) for i in tokenizer(text)["input_ids"]]
    specials = set(getattr(tokenizer, "all_special_ids", ()) or ()) - {backend.bos_token_id}
    while own and own[-1] in specials:
        own.pop()
    written = tokenization.get("input_ids")
    if written != own:
        return [
            f"{prompt}: bos=auto, but the forward ids {written} are not the tokenizer's own "
            f"for the prompt ({own}): the run does not read the model as its tokenizer does"
        ]
    return []


def check_invariants(lens_run: LensRun, kl_tolerance: float | None = None) -> list[str]:
    """Every violated invariant of every prompt, as readable lines (empty when all hold).

    ``kl_tolerance``: the last-layer KL bound (default: its class's, lens_tolerances aside).
    """
    backend = lens_run.run.backend
    tol = kl_tolerance_bits(backend.dtype) if kl_tolerance is None else kl_tolerance
    problems: list[str] = []
    with torch.no_grad():
        for prompt, files in lens_run.files.items():
            capture = lens_run.capture(prompt)
            diag = files.json["diagnostics"]
            problems += _consistency_problems(
                prompt, backend, capture.residuals[-1], capture.logits, diag, tol
            )
            point = str(diag.get("decode_norm", NEXT_LN1))
            problems += _norm_problems(prompt, backend, capture.residuals, point)
            if point != RAW:  # a raw lens is not the model at its last layer
                problems += _files_problems(prompt, backend, capture.logits, files)
            problems += _tokenization_problems(prompt, backend, files)
            tables = [t for t in (files.records, files.pure) if t is not None]
            problems += _mass_problems(prompt, tables)
            problems += _canaries(prompt, backend, capture, files, point, tol)
    return problems


def _canaries(
    prompt: str, backend: LensBackend, capture: Capture, files: PromptFiles, point: str, tol: float
) -> list[str]:
    """Each check above, run once on an input it must refuse: a check that passes its
    canary cannot fail, and would pin whatever a model does as golden."""
    diag = files.json["diagnostics"]
    wrong = capture.logits.roll(1, dims=-1)  # every position's logits moved by one id
    failed = []
    if not _consistency_problems(prompt, backend, capture.residuals[-1], wrong, diag, tol):
        failed.append("the last-layer consistency check accepted logits shifted by one id")
    if point != RAW and not _files_problems(prompt, backend, wrong, files):
        failed.append("the records' last-layer check accepted logits shifted by one id")
    normed = any(m is not None for m in decode_norm_modules(backend.stack, point))
    scaled = _norm_problems(prompt, backend, capture.residuals, point, reference=_scaled_module)
    if normed and not scaled:
        failed.append("the norm check accepted a module whose output was scaled by 1.5")
    if files.records is not None and not _mass_problems(prompt, [_halved(files.records)]):
        failed.append("the probability-mass check accepted a halved rest_mass")
    return [f"{prompt}: a self-check cannot fail: {line}" for line in failed]


def _halved(table: CsvTable) -> CsvTable:
    import dataclasses

    rows = [dataclasses.replace(r, rest_mass=r.rest_mass / 2 + 0.25) for r in table.rows[:1]]
    return dataclasses.replace(table, rows=rows)
