"""lenscheck's tuned lens against tuned-lens 0.2.0's own forward, on a real model.

    python benchmarks/tunedlens_agreement.py [--model embedded] [--prompts FILE]
        [--seed 316] [--json out.json]          # `nox -s tunedlens` installs and runs it

tuned-lens builds the lens from the model (``TunedLens.from_model``: a zero translator per
block), seeded random translators replace the zeros, and ``TunedLens.save`` writes it to a
temporary folder. lenscheck then reads that folder (``--lens tuned=PATH``) and runs its
pipeline on the default suite and the example suite, in float32 on the CPU. For every
(prompt, layer, position) cell, tuned-lens' logits come from ``TunedLens.forward(h, i)`` on
the model's ``output_hidden_states`` (the last layer: the model's own logits, as tuned-lens'
``PredictionTrajectory`` has it). Printed: cells, top-1 agreement, max |ΔH| of the CSV's
entropies against lenscheck's entropy of tuned-lens' logits (both float32, the same
function), max |ΔH| in float64 of both logits, max |Δ logit|. Exits 1 unless every top-1
agrees and max |ΔH| <= 1e-5 bits.

Needs tuned-lens 0.2.0 without TransformerLens 4 (tuned-lens' model_surgery probes
``transformer_lens.HookedTransformer``, which TransformerLens 4 removed: it raises).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
EXAMPLE_SUITE = HERE.parent / "examples" / "prompts" / "capitals.toml"
ENTROPY_BITS = 1e-5


def seeded_translators(lens: Any, seed: int) -> None:
    """W ~ N(0, 0.5^2 / d), b ~ N(0, 0.25^2), different per layer (make_fixtures.py's)."""
    gen = torch.Generator().manual_seed(seed)
    for translator in lens.layer_translators:
        d = translator.weight.shape[0]
        with torch.no_grad():
            translator.weight.copy_(torch.randn(d, d, generator=gen) * (0.5 / math.sqrt(d)))
            translator.bias.copy_(torch.randn(d, generator=gen) * 0.25)


def bits64(logits: torch.Tensor) -> torch.Tensor:
    log_p = torch.log_softmax(logits.double(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1) / math.log(2)


def tuned_lens_logits(lens: Any, model: Any, ids: list[int]) -> torch.Tensor:
    """[L+1, T, V] as tuned-lens decodes the prompt."""
    with torch.no_grad():
        out = model(torch.tensor([ids], device=model.device), output_hidden_states=True)
        layers = [lens.forward(h, i)[0].float() for i, h in enumerate(out.hidden_states[:-1])]
        layers.append(out.logits[0].float())
    return torch.stack(layers)


def compare(
    result: Any, theirs: torch.Tensor, ours: torch.Tensor, logit: torch.Tensor
) -> dict[str, Any]:
    """One prompt's agreement between lenscheck (its records and its lens' logits) and
    tuned-lens' logits; and how far both are from the final-norm logit lens (``logit``), so
    that an agreement of translators that did nothing cannot pass unseen."""
    from lenscheck.numerics import entropy_bits

    their_h = entropy_bits(theirs)  # lenscheck's fp32 entropy of tuned-lens' logits
    records = result.entropies  # what the CSV holds, fp32
    top1 = theirs.argmax(-1)
    return {
        "cells": int(records.numel()),
        "top1_agree": int((result.top1_ids == top1).sum()),
        "max_dH_records_bits": float((records - their_h).abs().max()),
        "max_dH_float64_bits": float((bits64(ours) - bits64(theirs)).abs().max()),
        "max_dlogit": float((ours - theirs).abs().max()),
        "top1_differs_from_logit_lens": int((logit.argmax(-1) != top1).sum()),
        "mean_dH_vs_logit_lens_bits": float((bits64(logit) - bits64(theirs)).abs().mean()),
    }


def build_lens(backend: Any, folder: Path, seed: int) -> Any:
    from tuned_lens.nn.lenses import TunedLens

    from lenscheck.backends.hf import transformers_model

    lens = TunedLens.from_model(transformers_model(backend))
    seeded_translators(lens, seed)
    lens.config.base_model_name_or_path = backend.model_id
    lens.save(folder)
    return lens


def run(model: str, suites: list[Any], seed: int) -> list[dict[str, Any]]:
    from lenscheck.backends.hf import transformers_model
    from lenscheck.config import LensConfig
    from lenscheck.lens import run_lenses
    from lenscheck.lenses import LogitLens, open_lenses
    from lenscheck.runner import load_model

    rows = []
    with tempfile.TemporaryDirectory(prefix="tunedlens-") as tmp:
        cfg = LensConfig(device="cpu", dtype="float32", lenses=(f"tuned={tmp}",))
        _, backend = load_model(model, cfg)
        lens = build_lens(backend, Path(tmp), seed)
        (ours,) = [o.bind(backend, cfg) for o in open_lenses(cfg.lenses)]
        for suite in suites:
            results = run_lenses(backend, suite, cfg.evolve(suite=suite), [ours])["tuned"]
            for case in suite.cases:
                result = results[case.id]
                theirs = tuned_lens_logits(lens, transformers_model(backend), result.input_ids)
                with torch.no_grad():
                    residuals = backend.run(result.input_ids).residuals
                    mine = ours.decode_all(residuals)
                    logit = LogitLens(backend, "final").decode_all(residuals)
                rows.append({"prompt": case.id, **compare(result, theirs, mine, logit)})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    keys = [
        "cells",
        "top1_agree",
        "max_dH_records_bits",
        "max_dH_float64_bits",
        "max_dlogit",
        "top1_differs_from_logit_lens",
        "mean_dH_vs_logit_lens_bits",
    ]
    total = {
        "prompt": "all",
        **{k: sum(r[k] for r in rows) for k in ("cells", "top1_agree")},
        **{k: max(r[k] for r in rows) for k in keys[2:5]},
        "top1_differs_from_logit_lens": sum(r["top1_differs_from_logit_lens"] for r in rows),
        "mean_dH_vs_logit_lens_bits": sum(
            r["mean_dH_vs_logit_lens_bits"] * r["cells"] for r in rows
        )
        / sum(r["cells"] for r in rows),
    }
    return markdown_table([*rows, total], keys)


def markdown_table(rows: list[dict[str, Any]], keys: list[str] | tuple[str, ...]) -> str:
    """One row per prompt (its ``prompt`` first), floats as ``1.23e-05``."""
    lines = ["| prompt | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in rows:
        cells = [f"{r[k]:.2e}" if isinstance(r[k], float) else str(r[k]) for k in keys]
        lines.append(f"| {r['prompt']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from lenscheck.suites import DEFAULT_SUITE, load_suite

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts", default=str(EXAMPLE_SUITE))
    parser.add_argument("--seed", type=int, default=316)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = run(args.model, [DEFAULT_SUITE, load_suite(args.prompts)], args.seed)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    cells, agree = sum(r["cells"] for r in rows), sum(r["top1_agree"] for r in rows)
    worst = max(r["max_dH_records_bits"] for r in rows)
    ok = agree == cells and worst <= ENTROPY_BITS
    print(
        f"{'agree' if ok else 'DISAGREE'}: top-1 {agree}/{cells}, max |dH| {worst:.2e} bits "
        f"(allowed {ENTROPY_BITS:g})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
