"""lenscheck benchmark: everything measured side by side in one run.

- load: resolve + load the embedded model through the transformers backend;
- pipeline: the post-load lens (run_lens + CSV/JSON bytes, heatmap timed apart);
- floor: the same forward passes (main prompt + the 14 probe prompts as one padded
  batch) plus the one unembedding matmul of every layer and position, timed alone;
at 1 thread and at all threads (medians of --repeat runs), then the whole
`lenscheck run` command in a subprocess (wall time and peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any


def _median_s(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up: first-call allocations and lazy imports are not the steady state
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _floor(backend: Any, cfg: Any) -> Callable[[], None]:
    import torch

    from lenscheck.lens import normalized_residuals

    ids = backend.encode(cfg.prompt)
    probes = [backend.encode(p) for p in cfg.test_prompts]
    # The probes as one right-padded batch, as the pipeline runs them: the floor is the
    # cheapest way to the same distributions, not the original's one forward per prompt.
    width = max(map(len, probes))
    padded = torch.tensor([p + [0] * (width - len(p)) for p in probes])
    mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in probes])
    ends = torch.tensor(sorted({len(p) - 1 for p in probes}))
    normed = normalized_residuals(backend, backend.run(ids).residuals)
    weight = backend.unembed.weight.float()

    def floor() -> None:
        with torch.no_grad():
            backend.model(torch.tensor([ids]), use_cache=False)
            backend.model(padded, attention_mask=mask, use_cache=False, logits_to_keep=ends)
            torch.nn.functional.linear(normed, weight)

    return floor


def _pipeline(backend: Any, cfg: Any) -> Callable[[], None]:
    from lenscheck.artifacts import dump_json_bytes
    from lenscheck.lens import run_lens
    from lenscheck.schema import dump_csv_bytes, pure_row, record_row

    def pipeline() -> None:
        result = run_lens(backend, cfg)
        dump_csv_bytes("records", (record_row(r) for r in result.records))
        dump_csv_bytes("pure", (pure_row(r) for r in result.pure_records))
        dump_json_bytes(result.json_data)

    return pipeline


def in_process(model: str, repeat: int) -> dict[str, Any]:
    """Load, pipeline and floor timings at 1 thread and at all threads."""
    import torch

    from lenscheck.config import LensConfig
    from lenscheck.lens import run_lens
    from lenscheck.plot import render_heatmap_png
    from lenscheck.runner import load_model

    cfg = LensConfig(device="cpu")
    t0 = time.perf_counter()
    _, backend = load_model(model, cfg)
    out: dict[str, Any] = {"model": model, "load_s": time.perf_counter() - t0}
    result = run_lens(backend, cfg)
    out["heatmap_s"] = _median_s(lambda: render_heatmap_png(result, model), 1)
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        pipe = _median_s(_pipeline(backend, cfg), repeat)
        floor = _median_s(_floor(backend, cfg), repeat)
        out[f"threads_{threads}"] = {"pipeline_s": pipe, "floor_s": floor, "ratio": pipe / floor}
    return out


def whole_command(model: str) -> dict[str, Any]:
    """`lenscheck run MODEL` in a fresh process: wall time and the child's peak RSS."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "lenscheck", "run", model, "--out-dir", out, "--device", "cpu"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"cli_wall_s": wall, "cli_peak_rss_mb": rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = {**whole_command(args.model), **in_process(args.model, args.repeat)}
    print(json.dumps(results, indent=2))
    for key, row in results.items():
        if key.startswith("threads_"):
            print(f"{key}: pipeline {row['pipeline_s']:.3f}s / floor {row['floor_s']:.3f}s "
                  f"= {row['ratio']:.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
