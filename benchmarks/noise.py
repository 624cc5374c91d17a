"""Run-to-run noise of identical float32 runs, against the float32 tolerances.

    python benchmarks/noise.py [--models embedded,embedded-gemma3] [--runs 20] [--threads N]

Each run is a fresh `lenscheck run MODEL --device cpu --no-heatmap` process; every run's
golden document is compared with the first's, value by value. Prints the spread per value
class and its margin under the cpu-float32 tolerances (lenscheck requires 5x).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: (value class, golden-document path in a prompt entry, the cpu-float32 tolerance field)
_CLASSES = (
    ("records entropy", ("records", "entropy"), "entropy"),
    ("records p(top-1)", ("records", "p_top1"), "p_top1"),
    ("next-token entropy", ("next_token", "entropy"), "entropy"),
    ("probe entropy", ("probes", "entropy"), "entropy"),
    ("probe p(top-1)", ("probes", "p_top1"), "p_top1"),
    ("temperature entropy", ("temperature", "entropy"), "entropy"),
)


def _flat(value: Any) -> list[float]:
    if isinstance(value, list):
        return [x for v in value for x in _flat(v)]
    return [float(value)] if isinstance(value, (int, float)) else []


def _decoding(entry: dict[str, Any]) -> list[float]:
    return [x for p in ("next-ln1", "final", "raw") for x in entry["decoding"][p]["entropy"]]


def spread(docs: list[dict[str, Any]]) -> dict[str, float]:
    """Largest |delta| of each value class between the first run and every other one."""
    out: dict[str, float] = {}
    first = docs[0]["prompts"]
    for doc in docs[1:]:
        for pid, entry in doc["prompts"].items():
            base = first[pid]
            for name, (section, metric), _ in _CLASSES:
                pairs = zip(_flat(base[section][metric]), _flat(entry[section][metric]))
                out[name] = max([out.get(name, 0.0), *(abs(a - b) for a, b in pairs)])
            pairs = zip(_decoding(base), _decoding(entry))
            key = "decoding entropy"
            out[key] = max([out.get(key, 0.0), *(abs(a - b) for a, b in pairs)])
            pairs = zip(
                _flat(base["final_prediction"]["entropy"]),
                _flat(entry["final_prediction"]["entropy"]),
            )
            out["final entropy"] = max(
                [out.get("final entropy", 0.0), *(abs(a - b) for a, b in pairs)]
            )
            identical = (
                base["records"] == entry["records"] and base["next_token"] == entry["next_token"]
            )
            out["runs with identical lens values"] = (
                out.get("runs with identical lens values", 0) + identical
            )
    return out


def measure(model: str, runs: int, threads: int | None) -> dict[str, Any]:
    """``runs`` fresh processes of ``lenscheck run MODEL``; the spread of their values."""
    from lenscheck.diff import load_side

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    docs = []
    with tempfile.TemporaryDirectory(prefix="lenscheck-noise-") as tmp:
        for n in range(runs):
            out = Path(tmp) / f"run-{n}"
            cmd = [
                sys.executable,
                "-m",
                "lenscheck",
                "run",
                model,
                "--device",
                "cpu",
                "--no-heatmap",
                "--out-dir",
                str(out),
            ]
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            (doc,) = load_side(out).values()
            docs.append(doc)
    return {"model": model, "runs": runs, "threads": threads or "default", "spread": spread(docs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="embedded,embedded-gemma3")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    from lenscheck.golden.tolerances import DEFAULT_TOLERANCES

    fp32 = DEFAULT_TOLERANCES["cpu-float32"]
    for model in args.models.split(","):
        result = measure(model, args.runs, args.threads)
        print(json.dumps(result))
        for name, field in [(c[0], c[2]) for c in _CLASSES] + [
            ("decoding entropy", "entropy"),
            ("final entropy", "entropy"),
        ]:
            value = result["spread"].get(name, 0.0)
            tol = getattr(fp32, field)
            margin = "identical" if value == 0 else f"{tol / value:.0f}x"
            print(
                f"{model}: {name}: max |Δ| over {args.runs} runs {value:.3g} "
                f"(cpu-float32 {field} {tol:g}: margin {margin})"
            )
        same = result["spread"].get("runs with identical lens values", 0)
        print(
            f"{model}: {same} of {args.runs - 1} runs had the first run's lens values bit for bit"
        )


if __name__ == "__main__":
    main()
