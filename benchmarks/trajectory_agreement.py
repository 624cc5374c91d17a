"""lenscheck's next-token measurements against tuned-lens 0.2.0's ``PredictionTrajectory``.

    python benchmarks/trajectory_agreement.py [--model embedded] [--prompts FILE]
        [--json out.json]                       # `nox -s tunedlens` installs and runs it

lenscheck runs its standard lens (the final norm at every layer, the tokenizer's own BOS,
the extended schema) on the built-in prompt and the example suite, in float32 on the CPU,
and writes its files. tuned-lens then builds its own ``LogitLens`` of the same transformers
model and its ``PredictionTrajectory.from_lens_and_model`` of the same ids: its log-probs
per layer (the last layer: the model's own logits), its ``entropy``, its ``rank`` of the
answer and ``kl_divergence`` against a trajectory that holds the model's own log-probs at
every layer, i.e. KL(P_layer || P_final) as lenscheck's ``kl_to_final_bits`` defines it
(tuned-lens' ``forward_kl`` is the other direction). The answer's id is derived here from
the tokenizer as the metrics docs define it, not read from lenscheck. Compared, per layer at
the last position, with what lenscheck wrote: the pure next-token CSV's ``entropy_bits``,
``kl_to_final_bits``, ``answer_rank`` and the rawlens sidecar's ``top1_token_id_norm``.
Exits 1 unless every top-1 and every rank agree and max |dH|, |dKL| <= 1e-4 bits.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tunedlens_agreement import markdown_table

HERE = Path(__file__).resolve().parent
EXAMPLE_SUITE = HERE.parent / "examples" / "prompts" / "capitals.toml"
BITS = 1e-4
LN2 = math.log(2)


def answer_id(tokenizer: Any, prompt: str, answer: str) -> int:
    """The answer's first id beyond the prompt's (the spaced form unless it does not extend
    the prompt's ids), without special tokens."""
    base = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    for text in (f"{prompt} {answer}", f"{prompt}{answer}"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > len(base) and ids[: len(base)] == base:
            return int(ids[len(base)])
    raise ValueError(f"answer {answer!r} does not extend the ids of prompt {prompt!r}")


def trajectory_stats(model: Any, tokenizer: Any, ids: list[int], target: int) -> dict[str, Any]:
    """tuned-lens' statistics at the last position, per layer (bits)."""
    from tuned_lens.nn.lenses import LogitLens
    from tuned_lens.plotting import PredictionTrajectory

    lens = LogitLens.from_model(model)
    traj = PredictionTrajectory.from_lens_and_model(
        lens, model, ids, tokenizer=tokenizer, targets=[target] * len(ids)
    )
    head = np.broadcast_to(traj.model_log_probs, traj.log_probs.shape).copy()
    final = PredictionTrajectory(log_probs=head, input_ids=traj.input_ids)
    return {
        "top1": traj.log_probs[:, -1].argmax(-1),
        "entropy_bits": traj.entropy().stats[:, -1] / LN2,
        "kl_bits": traj.kl_divergence(final).stats[:, -1] / LN2,
        "rank": traj.rank().stats[:, -1],
    }


def lenscheck_rows(paths: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pure next-token CSV's extended columns and the rawlens sidecar's rows, as
    lenscheck's own readers parse them."""
    from lenscheck.metrics import read_sidecar
    from lenscheck.schema import read_csv

    pure = [dict(row.extra) for row in read_csv(paths.pure_csv).rows]
    return pure, list(read_sidecar(paths.rawlens_csv).rows)


def compare(
    ours: tuple[list[dict[str, Any]], list[dict[str, Any]]], theirs: dict[str, Any]
) -> dict[str, Any]:
    pure, rawlens = ours
    layers = len(theirs["top1"])
    if len(pure) != layers or len(rawlens) != layers:
        raise SystemExit(f"layers: lenscheck {len(pure)}/{len(rawlens)} vs tuned-lens {layers}")
    pairs = list(zip(pure, rawlens, theirs["top1"], theirs["rank"], strict=True))
    d_h = [abs(r["entropy_bits"] - float(t)) for r, t in zip(pure, theirs["entropy_bits"])]
    d_kl = [abs(r["kl_to_final_bits"] - float(t)) for r, t in zip(pure, theirs["kl_bits"])]
    return {
        "layers": layers,
        "top1_agree": sum(int(raw["top1_token_id_norm"]) == int(t) for _, raw, t, _ in pairs),
        "rank_agree": sum(int(p["answer_rank"]) == int(k) for p, _, _, k in pairs),
        "max_dH_bits": max(d_h),
        "max_dKL_bits": max(d_kl),
        "max_KL_bits": float(max(theirs["kl_bits"])),
    }


def run(model: str, suites: list[Any]) -> list[dict[str, Any]]:
    from lenscheck.backends.hf import transformers_model
    from lenscheck.config import LensConfig
    from lenscheck.runner import run_model

    rows = []
    for suite in suites:
        cfg = LensConfig(device="cpu", dtype="float32", suite=suite)
        with tempfile.TemporaryDirectory(prefix="trajectory-") as out:
            run_ = run_model(model, cfg, out)
            from transformers import AutoTokenizer

            # The checkpoint's own tokenizer, loaded here: the ids and the answer's id are
            # checked against it rather than taken from lenscheck.
            hf = transformers_model(run_.backend)
            tokenizer = AutoTokenizer.from_pretrained(run_.resolved.path)
            for case in suite.cases:
                ids = run_.results[case.id].input_ids
                own = tokenizer(case.prompt)["input_ids"]
                if list(ids) != list(own):
                    raise SystemExit(f"{case.id}: lenscheck ids {ids} vs tokenizer(text) {own}")
                target = answer_id(tokenizer, case.prompt, case.answer)
                with torch.no_grad():
                    theirs = trajectory_stats(hf, tokenizer, list(ids), target)
                ours = lenscheck_rows(run_.paths[case.id])
                rows.append({"prompt": case.id, **compare(ours, theirs)})
    return rows


KEYS = ("layers", "top1_agree", "rank_agree", "max_dH_bits", "max_dKL_bits", "max_KL_bits")


def table(rows: list[dict[str, Any]]) -> str:
    total = {
        "prompt": "all",
        **{k: sum(r[k] for r in rows) for k in KEYS[:3]},
        **{k: max(r[k] for r in rows) for k in KEYS[3:]},
    }
    return markdown_table([*rows, total], KEYS)


def main(argv: list[str] | None = None) -> int:
    from lenscheck.suites import DEFAULT_SUITE, load_suite

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts", default=str(EXAMPLE_SUITE))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    rows = run(args.model, [DEFAULT_SUITE, load_suite(args.prompts)])
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    layers = sum(r["layers"] for r in rows)
    top1, rank = sum(r["top1_agree"] for r in rows), sum(r["rank_agree"] for r in rows)
    d_h, d_kl = max(r["max_dH_bits"] for r in rows), max(r["max_dKL_bits"] for r in rows)
    ok = top1 == layers and rank == layers and d_h <= BITS and d_kl <= BITS
    print(
        f"{'agree' if ok else 'DISAGREE'}: top-1 {top1}/{layers}, rank {rank}/{layers}, "
        f"max |dH| {d_h:.2e}, max |dKL| {d_kl:.2e} bits (allowed {BITS:g})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
