"""lenscheck benchmark: everything measured side by side in one run.

    python benchmarks/bench.py [--model embedded] [--device cpu] [--repeat 5]
        [--parts pipeline,suite,cli,memory,lenses] [--json out.json]

* pipeline: load time; the post-load lens (run_suite + CSV/JSON bytes; heatmap timed apart)
  against its floor (the same forward passes, as the same padded batches, plus one
  unembedding matmul of every layer and position), at 1 thread and at all threads;
* suite: the 16-prompt suite (benchmarks/suite16.toml) against its first prompt alone,
  post-load, at 1 and all threads, and the peak RSS of `lenscheck run` on each;
* cli: warm `lenscheck run MODEL` (heatmap on), `--no-heatmap`,
  `python -c "import torch, transformers"`, and transformers' own load of the same
  checkpoint plus one forward pass of the default prompt (no lenscheck), median of
  --repeat runs each, interleaved, with lenscheck's bytecode compiled first;
* memory: peak RSS of a pytest session on the embedded model alone and on it plus a copy
  of its converted checkpoint given as a local directory (one model in memory at a time);
* lenses: the post-load pipeline (run_suite + CSV/JSON bytes, default suite) through the
  tuned lens (seeded random translators in a tuned-lens folder) against the logit lens, and
  both lenses in one run, interleaved, at 1 thread and at all threads (issue 25: the tuned
  lens adds one d x d matmul per cell, <= 1.3x the logit lens).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SUITE16 = HERE / "suite16.toml"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
#: Runs a command line in this interpreter and prints its peak RSS (MiB) as the last line.
#: Linux: VmHWM, the high-water mark of this process image. Not ru_maxrss: Linux carries it
#: over exec from the process that spawned us, so every child reported at least the
#: benchmark's own peak (a 16-prompt suite and one prompt both "2685 MiB"). ru_maxrss is
#: kilobytes on Linux, bytes on macOS.
_RSS = """
import resource, runpy, sys
sys.argv = sys.argv[1:]

def peak_mib():
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            kib = next(line.split()[1] for line in fh if line.startswith("VmHWM:"))
        return int(kib) / 1024
    except OSError:
        scale = 2**20 if sys.platform == "darwin" else 2**10
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale

try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
finally:
    print(peak_mib())
"""


def _median_s(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up: first-call allocations and lazy imports are not the steady state
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _floor(backend: Any, suite: Any) -> Callable[[], None]:
    """The same forward passes as the pipeline (its padded batches) and one unembedding."""
    import torch

    from lenscheck.backends.base import batch_token_budget, plan_batches, right_pad
    from lenscheck.lens import normalized_residuals

    batch = [backend.encode(c.prompt) for c in suite] + [
        backend.encode(p) for c in suite for p in c.probes
    ]
    groups = plan_batches([len(ids) for ids in batch], batch_token_budget(backend.facts.d_vocab))
    padded = [right_pad([batch[i] for i in g], backend.model.device) for g in groups]
    mains = backend.run_batch(batch[: len(suite)])
    normed = torch.cat([normalized_residuals(backend, c.residuals) for c in mains], dim=1)
    weight = backend.unembed.weight.float()

    def floor() -> None:
        with torch.no_grad():
            for tokens, mask in padded:
                backend.model(tokens, attention_mask=mask, use_cache=False)
            torch.nn.functional.linear(normed, weight)

    return floor


def _pipeline(backend: Any, suite: Any, cfg: Any) -> Callable[[], None]:
    from lenscheck.lens import run_suite
    from lenscheck.runner import output_bytes

    def pipeline() -> None:
        for result in run_suite(backend, suite, cfg).values():
            output_bytes(result, cfg)

    return pipeline


def _threads() -> list[int]:
    return sorted({1, os.cpu_count() or 1})


def pipeline_part(model: str, device: str, repeat: int) -> dict[str, Any]:
    """Load, then the default suite's post-load pipeline vs its floor, per thread count."""
    import torch

    from lenscheck.config import LensConfig
    from lenscheck.plot import render_heatmap_png
    from lenscheck.runner import load_model
    from lenscheck.suites import DEFAULT_SUITE

    cfg = LensConfig(device=device)
    t0 = time.perf_counter()
    _, backend = load_model(model, cfg)
    out: dict[str, Any] = {"model": model, "device": device, "load_s": time.perf_counter() - t0}
    from lenscheck.lens import run_lens

    result = run_lens(backend, cfg)
    out["heatmap_s"] = _median_s(lambda: render_heatmap_png(result, model), 1)
    for threads in _threads():
        torch.set_num_threads(threads)
        pipe = _median_s(_pipeline(backend, DEFAULT_SUITE, cfg), repeat)
        floor = _median_s(_floor(backend, DEFAULT_SUITE), repeat)
        out[f"threads_{threads}"] = {"pipeline_s": pipe, "floor_s": floor, "ratio": pipe / floor}
    return out


#: What any transformers user pays before the lens starts: import, load the checkpoint and
#: its tokenizer, one forward pass of the prompt. argv: checkpoint, device, dtype, prompt.
_TRANSFORMERS_FLOOR = """
import sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path, device, dtype, prompt = sys.argv[1:5]
model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
ids = AutoTokenizer.from_pretrained(path)(prompt, return_tensors="pt")["input_ids"]
with torch.no_grad():
    model(ids.to(device))
"""


def _peak_rss_mb(args: list[str], cwd: Path | None = None) -> float:
    """Peak RSS (MiB) of ``python -m args...`` run alone in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _RSS, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **OFFLINE},
    )
    return float(out.stdout.strip().splitlines()[-1])


def suite_part(model: str, device: str, repeat: int) -> dict[str, Any]:
    """16 prompts against the first of them alone: post-load time and peak RSS."""
    import torch

    from lenscheck.config import LensConfig
    from lenscheck.runner import load_model
    from lenscheck.suites import PromptSuite, load_suite

    suite = load_suite(SUITE16)
    one = PromptSuite(name="one", cases=suite.cases[:1], source=suite.source)
    cfg = LensConfig(device=device)
    _, backend = load_model(model, cfg)
    out: dict[str, Any] = {"prompts": len(suite)}
    for threads in _threads():
        torch.set_num_threads(threads)
        many = _median_s(_pipeline(backend, suite, cfg), repeat)
        single = _median_s(_pipeline(backend, one, cfg), repeat)
        floor = _median_s(_floor(backend, suite), repeat)
        out[f"threads_{threads}"] = {
            "suite_s": many,
            "one_prompt_s": single,
            "ratio": many / single,
            "suite_floor_s": floor,
            "suite_vs_floor": many / floor,
        }
    with tempfile.TemporaryDirectory() as tmp:
        single_toml = Path(tmp) / "one.toml"
        first = suite.cases[0]
        single_toml.write_text(
            f'[[prompts]]\nid = "{first.id}"\nprompt = {json.dumps(first.prompt)}\n'
            f"answer = {json.dumps(first.answer)}\nprobes = {json.dumps(list(first.probes))}\n",
            encoding="utf-8",
        )
        for name, path in (("one_prompt", single_toml), ("suite", SUITE16)):
            run = [
                "lenscheck",
                "run",
                model,
                "--device",
                device,
                "--no-heatmap",
                "--prompts",
                str(path),
                "--out-dir",
                str(Path(tmp) / name),
            ]
            out[f"{name}_peak_rss_mb"] = _peak_rss_mb(run)
    return out


def _compile_lenscheck() -> None:
    """Write lenscheck's bytecode, as a warm run finds it after a wheel install or any
    earlier import. Where PYTHONDONTWRITEBYTECODE is set (this project's machines) an
    editable install never caches it, and every run compiled ~40 modules again (~0.05 s)."""
    import compileall

    import lenscheck

    compileall.compile_dir(str(Path(lenscheck.__file__).parent), quiet=1)


def cli_part(model: str, device: str, repeat: int) -> dict[str, Any]:
    """Warm `lenscheck run` with and without the heatmap, the import floor, and transformers'
    own load and forward pass of the same checkpoint, interleaved."""
    from lenscheck.device import choose_dtype
    from lenscheck.models import resolve_model
    from lenscheck.suites import DEFAULT_SUITE

    checkpoint, prompt = resolve_model(model).path, DEFAULT_SUITE.cases[0].prompt
    dtype = str(choose_dtype(device, model)).removeprefix("torch.")  # as `lenscheck run` picks
    _compile_lenscheck()
    commands = {
        "run": [sys.executable, "-m", "lenscheck", "run", model, "--device", device],
        "run_no_heatmap": [
            sys.executable,
            "-m",
            "lenscheck",
            "run",
            model,
            "--device",
            device,
            "--no-heatmap",
        ],
        "import_torch_transformers": [sys.executable, "-c", "import torch, transformers"],
        "transformers_load_forward": [
            sys.executable,
            "-c",
            _TRANSFORMERS_FLOOR,
            str(checkpoint),
            device,
            dtype,
            prompt,
        ],
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    env = {**os.environ, **OFFLINE}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(repeat + 1):  # the first round warms the caches and is dropped
            for name, cmd in commands.items():
                full = [*cmd, "--out-dir", str(Path(tmp) / f"{name}-{n}")] if "run" in name else cmd
                t0 = time.perf_counter()
                subprocess.run(full, check=True, capture_output=True, env=env)
                if n:
                    times[name].append(time.perf_counter() - t0)
        rss = _peak_rss_mb(
            ["lenscheck", "run", model, "--device", device, "--out-dir", str(Path(tmp) / "rss")]
        )
    out: dict[str, Any] = {f"{k}_median_s": statistics.median(v) for k, v in times.items()}
    out["heatmap_cost_s"] = out["run_median_s"] - out["run_no_heatmap_median_s"]
    out["after_imports_s"] = (
        out["run_no_heatmap_median_s"] - out["import_torch_transformers_median_s"]
    )
    out["after_transformers_s"] = (
        out["run_no_heatmap_median_s"] - out["transformers_load_forward_median_s"]
    )
    out["run_peak_rss_mb"] = rss
    return out


def memory_part() -> dict[str, Any]:
    """Peak RSS: a pytest session on the embedded model, and on it plus a local copy."""
    from lenscheck.models import resolve_model

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        copy = project / "models" / "smollm2-copy"
        shutil.copytree(resolve_model("embedded").path, copy)
        base = [
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-q",
            "--snapshot-update",
            "-p",
            "no:xdist",
        ]
        for name, models in (("one_model", "embedded"), ("two_models", f"embedded,{copy}")):
            out[f"{name}_peak_rss_mb"] = _peak_rss_mb([*base, f"--lens-models={models}"], project)
    out["ratio"] = out["two_models_peak_rss_mb"] / out["one_model_peak_rss_mb"]
    return out


def _interleaved_medians(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median seconds of each function, run in turns so that a change in the machine's load
    lands on all of them alike (one warm-up round first)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for n in range(repeat + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if n:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def write_random_tuned_lens(backend: Any, folder: Path, seed: int = 316) -> Path:
    """A tuned-lens checkpoint folder (TunedLens.save's layout) with seeded random
    translators for ``backend``; tuned-lens itself is not needed."""
    import math

    import torch

    d, n = backend.facts.d_model, backend.facts.num_layers
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for i in range(n):
        state[f"{i}.weight"] = torch.randn(d, d, generator=gen) * (0.5 / math.sqrt(d))
        state[f"{i}.bias"] = torch.randn(d, generator=gen) * 0.25
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "params.pt")
    config = {
        "base_model_name_or_path": backend.model_id,
        "d_model": d,
        "num_hidden_layers": n,
        "bias": True,
        "base_model_revision": None,
        "unembed_hash": None,
        "lens_type": "linear_tuned_lens",
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def lenses_part(model: str, device: str, repeat: int) -> dict[str, Any]:
    """The default suite's post-load pipeline through the logit lens, the tuned lens and
    both at once (lenses bound once: loading a checkpoint is not the pipeline)."""
    import torch

    from lenscheck.config import LensConfig
    from lenscheck.lens import run_lenses
    from lenscheck.lenses import open_lenses
    from lenscheck.runner import load_model, output_bytes
    from lenscheck.suites import DEFAULT_SUITE

    cfg = LensConfig(device=device)
    _, backend = load_model(model, cfg)
    out: dict[str, Any] = {"model": model, "device": device}
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_random_tuned_lens(backend, Path(tmp) / "tuned")
        specs = ("logit", f"tuned={folder}")
        logit, tuned = (o.bind(backend, cfg) for o in open_lenses(specs))

    def through(*lenses: Any) -> Callable[[], None]:
        def pipeline() -> None:
            for results in run_lenses(backend, DEFAULT_SUITE, cfg, list(lenses)).values():
                for result in results.values():
                    output_bytes(result, cfg)

        return pipeline

    fns = {"logit_s": through(logit), "tuned_s": through(tuned), "both_s": through(logit, tuned)}
    for threads in _threads():
        torch.set_num_threads(threads)
        row = _interleaved_medians(fns, repeat)
        row["tuned_vs_logit"] = row["tuned_s"] / row["logit_s"]
        row["both_vs_logit"] = row["both_s"] / row["logit_s"]
        out[f"threads_{threads}"] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parts", default="pipeline,suite,cli,memory")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    parts = args.parts.split(",")
    results: dict[str, Any] = {}
    if "cli" in parts:
        results["cli"] = cli_part(args.model, args.device, max(args.repeat, 3))
    if "memory" in parts and args.model == "embedded":
        results["memory"] = memory_part()
    if "pipeline" in parts:
        results.update(pipeline_part(args.model, args.device, args.repeat))
    if "suite" in parts:
        results["suite"] = suite_part(args.model, args.device, args.repeat)
    if "lenses" in parts:
        results["lenses"] = lenses_part(args.model, args.device, args.repeat)
    print(json.dumps(results, indent=2))
    for key, row in results.items():
        if key.startswith("threads_"):
            print(
                f"{key}: pipeline {row['pipeline_s']:.3f}s / floor {row['floor_s']:.3f}s "
                f"= {row['ratio']:.2f}x"
            )
    for key, row in results.get("lenses", {}).items():
        if key.startswith("threads_"):
            print(
                f"lenses {key}: tuned {row['tuned_s']:.3f}s / logit {row['logit_s']:.3f}s = "
                f"{row['tuned_vs_logit']:.2f}x; both {row['both_vs_logit']:.2f}x"
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
