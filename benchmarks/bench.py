"""lenscheck benchmark: everything measured side by side in one run.

    python benchmarks/bench.py [--model embedded] [--device cpu] [--repeat 5]
        [--parts plugin,pipeline,suite,cli,memory,lenses] [--json out.json]
        [--docs docs/benchmarks.md]
        [--note TEXT]

* plugin: what the pytest plugin costs a session that uses no lens option (the modules it
  imports and their import time, benchmarks/plugin_cost.py);
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

Every sitting records when and where it ran (date, cores, CPU model, RAM, the versions of
Python, torch, transformers and lenscheck, the git commit). ``--docs PATH`` writes all of
it as markdown (:func:`render_markdown`): ``nox -s bench`` writes docs/benchmarks.md that
way, so the published figures are always one sitting's, never edited by hand. Without
``--docs`` a plain run writes no document.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from plugin_cost import plugin_lines, plugin_part  # beside this script (sys.path[0])

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
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


def _sample_s(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float]]:
    """Median wall time of ``repeat`` calls after one warm-up, and [fastest, slowest]: the
    spread shows how much the machine's load moved this sitting."""
    return _interleaved({"fn": fn}, repeat)["fn"]


def _interleaved(
    fns: dict[str, Callable[[], Any]], repeat: int
) -> dict[str, tuple[float, list[float]]]:
    """Each function's median wall time over ``repeat`` rounds and [fastest, slowest]: one
    warm-up call each (first-call allocations and lazy imports are not the steady state),
    then each called once per round in turn, so that a change in the machine's load during
    the sitting moves all of them alike and their ratios compare things measured side by
    side."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), [min(t), max(t)]) for name, t in times.items()}


def _median_s(fn: Callable[[], Any], repeat: int) -> float:
    return _sample_s(fn, repeat)[0]


def _floor(backend: Any, suite: Any, points: bool = False) -> Callable[[], None]:
    """The forward passes the pipeline runs (one prompt at a time with its probes, planned
    and padded as the pipeline plans them: lenscheck.lens.jobs) and one unembedding matmul
    of every layer and position of each prompt, into one output buffer kept across the
    prompts (as the pipeline keeps its own: a fresh [rows, V] output per prompt is new
    pages from the OS, which a strict floor does not pay); no softmax, entropy or top-k.
    ``points``: also the decoding-point ablation's rows (each prompt's last position at the
    two other decoding points, what every run writes into its JSON), in the same matmul as
    the prompt's own rows, as an fp32 logit lens reads them (lenscheck.lens.stats tail=)."""
    import torch

    from lenscheck.backends.base import batch_token_budget, plan_batches, right_pad
    from lenscheck.backends.hf import transformers_model
    from lenscheck.config import LensConfig
    from lenscheck.lens import normalized_residuals
    from lenscheck.lens.ablation import point_rows
    from lenscheck.lens.jobs import make_jobs
    from lenscheck.norms import DECODE_NORMS

    model = transformers_model(backend)
    cfg = LensConfig(device=str(model.device))
    budget = batch_token_budget(backend.facts.d_vocab)
    others = [point for point in DECODE_NORMS if point != cfg.decode_norm] if points else []
    padded = []
    normed = []
    for job in make_jobs(backend, cfg, suite):
        seqs = [job.ids, *job.probe_ids]
        groups = plan_batches([len(ids) for ids in seqs], budget)
        padded += [right_pad([seqs[i] for i in g], model.device) for g in groups]
        (main,) = backend.run_batch([job.ids])
        rows = normalized_residuals(backend, main.residuals)
        tail = point_rows(backend, [main], others)
        rows = rows.reshape(-1, rows.shape[-1])
        normed.append(rows if tail is None else torch.cat([rows, tail.to(rows.dtype)]))
    weight = backend.unembed.weight.float()
    out = torch.empty(max(len(rows) for rows in normed), len(weight), device=weight.device)

    def floor() -> None:
        with torch.no_grad():
            for tokens, mask in padded:
                model(tokens, attention_mask=mask, use_cache=False)
            for rows in normed:
                torch.mm(rows, weight.T, out=out[: len(rows)])

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
        out[f"threads_{threads}"] = _against_floors(backend, DEFAULT_SUITE, cfg, repeat, "pipeline")
    return out


def _against_floors(backend: Any, suite: Any, cfg: Any, repeat: int, name: str) -> dict[str, Any]:
    """``suite`` through the pipeline (``name``_s), under the original schema (the extended
    schema's cost), and the two floors, each sampled ``repeat`` times in one sitting."""
    from lenscheck.vocab import SCHEMA_ORIGINAL

    original_cfg = cfg.evolve(schema=SCHEMA_ORIGINAL)
    sampled = _interleaved(
        {
            "pipe": _pipeline(backend, suite, cfg),
            "orig": _pipeline(backend, suite, original_cfg),
            "floor": _floor(backend, suite),
            "full": _floor(backend, suite, points=True),
        },
        repeat,
    )
    (pipe, pipe_range), (orig, orig_range) = sampled["pipe"], sampled["orig"]
    (floor, floor_range), (full, full_range) = sampled["floor"], sampled["full"]
    return {
        f"{name}_s": pipe,
        "original_schema_s": orig,
        "extended_cost": pipe / orig,
        "floor_s": floor,
        "ratio": pipe / floor,
        "points_floor_s": full,
        "points_ratio": pipe / full,
        f"{name}_range_s": pipe_range,
        "original_schema_range_s": orig_range,
        "floor_range_s": floor_range,
        "points_floor_range_s": full_range,
    }


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
        single, single_range = _sample_s(_pipeline(backend, one, cfg), repeat)
        res = _against_floors(backend, suite, cfg, repeat, "suite")
        res.update(
            one_prompt_s=single, one_prompt_range_s=single_range, per_prompt=res["suite_s"] / single
        )
        out[f"threads_{threads}"] = res
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
    out.update({f"{k}_range_s": [min(v), max(v)] for k, v in times.items()})
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
        row = {name: t[0] for name, t in _interleaved(fns, repeat).items()}
        row["tuned_vs_logit"] = row["tuned_s"] / row["logit_s"]
        row["both_vs_logit"] = row["both_s"] / row["logit_s"]
        out[f"threads_{threads}"] = row
    return out


def _cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _ram_gib() -> float | None:
    """Physical memory in GiB: /proc/meminfo's MemTotal, else sysconf where it exists."""
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as fh:
            kib = next(line.split()[1] for line in fh if line.startswith("MemTotal:"))
        return int(kib) / 2**20
    except (OSError, StopIteration, ValueError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, OSError, ValueError):
        return None


def _git_commit() -> str | None:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if dirty else head


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (Unix), to show what else ran on the cores."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _dist_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _command_line(argv: list[str]) -> str:
    """How this sitting was started, without ``--note`` (it has a line of its own)."""
    shown, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--note="):
            skip = False
            continue
        if arg == "--note":
            skip = True
            continue
        shown.append(arg)
    return " ".join(["python benchmarks/bench.py", *shown])


def sitting_meta(args: argparse.Namespace) -> dict[str, Any]:
    """When, where and with what this sitting ran (the markdown's header)."""
    import lenscheck

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": _command_line(sys.argv[1:]),
        "model": args.model,
        "device": args.device,
        "repeat": args.repeat,
        "note": args.note,
        "load_average_start": _load_average(),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": _cpu_model(),
            "ram_gib": _ram_gib(),
            "platform": platform.platform(),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": _dist_version("torch"),
            "transformers": _dist_version("transformers"),
            "lenscheck": lenscheck.__version__,  # the tree that ran, installed or not
            "git_commit": _git_commit(),
        },
    }


def _s(value: float) -> str:
    return f"{value:.2f} s" if abs(value) >= 1 else f"{value * 1000:.0f} ms"


def _sr(part: dict[str, Any], key: str) -> str:
    """``part[key]`` (a median) in seconds, with the sitting's fastest and slowest run when
    recorded (``run_median_s`` -> ``run_range_s``, ``floor_s`` -> ``floor_range_s``)."""
    stem = key.removesuffix("_s").removesuffix("_median")
    rng = part.get(f"{stem}_range_s")
    text = _s(part[key])
    return f"{text} ({_s(rng[0])} to {_s(rng[1])})" if rng else text


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _mib(value: float) -> str:
    return f"{value:,.0f} MiB"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def _thread_keys(part: dict[str, Any]) -> list[str]:
    return sorted((k for k in part if k.startswith("threads_")), key=lambda k: int(k[8:]))


def _loads(values: list[float] | None) -> str:
    return "unknown" if not values else ", ".join(f"{v:.2f}" for v in values)


def _header_lines(meta: dict[str, Any]) -> list[str]:
    machine, versions = meta.get("machine", {}), meta.get("versions", {})
    ram = machine.get("ram_gib")
    return [
        "# Benchmarks",
        "",
        "Written by `nox -s bench` (`benchmarks/bench.py --docs docs/benchmarks.md`) from the "
        "measurements of one sitting: every figure below comes from the same run of the "
        "script, and ratios compare things measured side by side in it. Do not edit the "
        "figures by hand; run the session again.",
        "",
        f"- date: {meta.get('date', 'unknown')}",
        f"- machine: {machine.get('cores', '?')} cores, CPU {machine.get('cpu') or 'unknown'}, "
        f"RAM {f'{ram:.1f} GiB' if ram else 'unknown'}, {machine.get('platform', '')}".rstrip(", "),
        f"- versions: Python {versions.get('python')}, torch {versions.get('torch')}, "
        f"transformers {versions.get('transformers')}, lenscheck {versions.get('lenscheck')}, "
        f"commit `{versions.get('git_commit') or 'unknown'}`",
        f"- model {meta.get('model')}, device {meta.get('device')}, medians of "
        f"{meta.get('repeat')} repeats (the CLI part: at least 3)",
        f"- command: `{meta.get('command', 'python benchmarks/bench.py')}`",
        *(
            [
                f"- load average (1, 5, 15 min) at the start: {_loads(meta['load_average_start'])}"
                f", at the end: {_loads(meta.get('load_average_end'))}"
            ]
            if meta.get("load_average_start")
            else []
        ),
        *([f"- notes: {meta['note']}"] if meta.get("note") else []),
        "",
        "Times are medians, with the fastest and slowest run of the sitting in brackets. "
        "Absolute seconds follow the machine and its load (a load average above the core "
        "count means other work shared the cores); the ratios are what to compare between "
        "sittings.",
        "",
    ]


def _cli_lines(cli: dict[str, Any]) -> list[str]:
    floor = cli["transformers_load_forward_median_s"]
    rows = [
        (
            "warm `lenscheck run` (heatmap on)",
            _sr(cli, "run_median_s"),
            _x(cli["run_median_s"] / floor),
        ),
        (
            "warm `lenscheck run --no-heatmap`",
            _sr(cli, "run_no_heatmap_median_s"),
            _x(cli["run_no_heatmap_median_s"] / floor),
        ),
        (
            "transformers alone: load the checkpoint, one forward pass",
            _sr(cli, "transformers_load_forward_median_s"),
            _x(1.0),
        ),
        (
            '`python -c "import torch, transformers"`',
            _sr(cli, "import_torch_transformers_median_s"),
            _x(cli["import_torch_transformers_median_s"] / floor),
        ),
    ]
    derived = [
        ("the heatmap (run minus `--no-heatmap`)", _s(cli["heatmap_cost_s"])),
        ("`--no-heatmap` run after the imports", _s(cli["after_imports_s"])),
        ("`--no-heatmap` run minus transformers alone", _s(cli["after_transformers_s"])),
        ("peak RSS of `lenscheck run`", _mib(cli["run_peak_rss_mb"])),
    ]
    return [
        "## The command line, warm",
        "",
        "Each command in a fresh process, interleaved round by round (the first round warms "
        "the caches and is dropped); lenscheck's bytecode compiled first, as an install "
        'leaves it. "transformers alone" loads the same converted checkpoint with '
        "`AutoModelForCausalLM` and runs one forward pass of the built-in prompt, no lenscheck.",
        "",
        *_table(("command", "median", "vs transformers alone"), rows),
        *_table(("derived", "value"), derived),
    ]


#: What the two floors and the schema comparison mean, said under both tables.
_FLOORS_NOTE = (
    "The floor: the forward passes the pipeline runs (each prompt with its probes, padded "
    "as the pipeline pads them) and one unembedding matmul of every layer and position "
    "into an output buffer kept across prompts, without softmax, entropy or top-k. The "
    "floor with points adds, in the same matmul, the decoding-point ablation's rows (each "
    "prompt's last position at the two other decoding points, which every run writes into "
    "its JSON), as an fp32 logit lens reads them. "
    "Original schema: the same run with `schema=original` (the extended schema's cost is "
    "the ratio of the two). The four are timed in turns, one round after another."
)


def _floor_columns(part: dict[str, Any], name: str) -> tuple[str, ...]:
    return (
        _sr(part, f"{name}_s"),
        _sr(part, "original_schema_s"),
        _x(part["extended_cost"]),
        _sr(part, "floor_s"),
        _x(part["ratio"]),
        _sr(part, "points_floor_s"),
        _x(part["points_ratio"]),
    )


_FLOOR_HEADER = (
    "original schema",
    "extended / original",
    "floor",
    "run / floor",
    "floor with points",
    "run / floor with points",
)


def _pipeline_lines(res: dict[str, Any]) -> list[str]:
    rows = [
        (k.removeprefix("threads_"), *_floor_columns(res[k], "pipeline")) for k in _thread_keys(res)
    ]
    return [
        "## The pipeline after loading",
        "",
        "`run_suite` on the built-in prompt plus the bytes of its files, against its floors.",
        _FLOORS_NOTE,
        "",
        f"Load: {_s(res['load_s'])} (once, in this process); the heatmap: {_s(res['heatmap_s'])}.",
        "",
        *_table(("threads", "pipeline", *_FLOOR_HEADER), rows),
    ]


def _suite_lines(suite: dict[str, Any]) -> list[str]:
    rows = [
        (k.removeprefix("threads_"), *_floor_columns(suite[k], "suite"))
        for k in _thread_keys(suite)
    ]
    per_prompt = [
        (
            k.removeprefix("threads_"),
            _sr(suite[k], "suite_s"),
            _sr(suite[k], "one_prompt_s"),
            _x(suite[k]["per_prompt"]),
        )
        for k in _thread_keys(suite)
    ]
    rss = [
        (
            f"`lenscheck run --prompts` with the {suite['prompts']}-prompt suite",
            _mib(suite["suite_peak_rss_mb"]),
        ),
        ("the same with its first prompt alone", _mib(suite["one_prompt_peak_rss_mb"])),
    ]
    return [
        f"## A {suite['prompts']}-prompt suite",
        "",
        "`benchmarks/suite16.toml` after loading, against its floors (as above) and against "
        "its first prompt alone.",
        "",
        *_table(("threads", "suite", *_FLOOR_HEADER), rows),
        *_table(("threads", "suite", "first prompt", "suite / prompt"), per_prompt),
        *_table(("peak RSS", "value"), rss),
    ]


def _memory_lines(mem: dict[str, Any]) -> list[str]:
    rows = [
        ("the embedded model", _mib(mem["one_model_peak_rss_mb"])),
        (
            "the embedded model and a copy of its checkpoint as a local directory",
            _mib(mem["two_models_peak_rss_mb"]),
        ),
        ("two models / one", _x(mem["ratio"])),
    ]
    return [
        "## A plugin session's memory",
        "",
        "Peak RSS (VmHWM) of a pytest session running the generated tests "
        "(`--snapshot-update`, no xdist): one model in memory at a time, so a second model "
        "should cost little.",
        "",
        *_table(("session", "peak RSS"), rows),
    ]


def render_markdown(results: dict[str, Any]) -> str:
    """docs/benchmarks.md from one sitting's results (as ``--json`` writes them): the
    sitting's header, then one section per part that ran. Pure: reads only ``results``."""
    lines = _header_lines(results.get("meta", {}))
    if "cli" in results:
        lines += _cli_lines(results["cli"])
    if "load_s" in results:
        lines += _pipeline_lines(results)
    if "suite" in results:
        lines += _suite_lines(results["suite"])
    if "memory" in results:
        lines += _memory_lines(results["memory"])
    if "plugin" in results:
        lines += plugin_lines(results["plugin"])
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parts", default="plugin,pipeline,suite,cli,memory")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--docs",
        metavar="PATH",
        help="also write the results as markdown to PATH (nox -s bench: docs/benchmarks.md)",
    )
    parser.add_argument("--note", default="", help="a notes line for the markdown")
    args = parser.parse_args()
    parts = args.parts.split(",")
    results: dict[str, Any] = {"meta": sitting_meta(args)}
    if "plugin" in parts:
        results["plugin"] = plugin_part(max(args.repeat, 10))
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
    results["meta"]["load_average_end"] = _load_average()
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
    if args.docs:
        Path(args.docs).write_text(render_markdown(results), encoding="utf-8")
        print(f"wrote {args.docs}", file=sys.stderr)


if __name__ == "__main__":
    main()
