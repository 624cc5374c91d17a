"""Float32 tolerances against benign changes: measure, check the margins, write the table.

    python benchmarks/calibrate.py [--models embedded,synthetic-llama] [--full]
        [--suites default,examples/prompts/capitals.toml] [--changes eager,threads-2,...]
        [--json PATH] [--markdown PATH] [--metrics-only]

A benign change is one a user meets without changing what is computed: the attention kernel
(eager instead of SDPA, set with transformers' ``model.set_attn_implementation`` after the
model loads: lenscheck has no option for it), the torch thread count (1, 2, all cores), the
suite's composition (each prompt alone instead of inside its suite) and the backend
(TransformerLens' bridge and HookedTransformer where they load the model). Per model and
suite, a baseline run (transformers, SDPA, 1 thread, the whole suite) and one run per
change are turned into golden documents exactly as the plugin builds them (from the bytes of
the files), and paired leaf by leaf. Each numeric leaf belongs to a value class (entropy,
probability, final top-5 probability, answer rank, ...) at a decoding point (the run's lens
point, the three ablation points, or ``model``: the model's own head), so the table says,
per class, point and change, the largest |difference|. The golden ``metrics`` section (the
extended schema's columns, the rawlens sidecar, the milestones, the raw-vs-norm summary)
is classed by each declaration's tolerance class, ``m:`` prefixed, at ``raw`` where the
value reads the raw lens (``--metrics-only`` tabulates those alone).

The exit status is 1 when a change alarms (``compare_golden`` with lenscheck's cpu-float32
tolerances finds drift in the changed run against the baseline) or when a tolerance is
below ``MARGIN`` (5) times the largest benign difference of its class (a top-1 that changed
at a golden gap within 1/MARGIN of the near-tie gap counts too). ``nox -s calibrate`` runs
the small default set; ``--full`` (or ``nox -s calibrate -- --full``) every offline model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 5.0
SMALL_MODELS = ("embedded", "synthetic-llama", "synthetic-gpt2")
SMALL_SUITES = ("default",)
#: The standard preset (decoding at final) and the original one (at next-ln1, the
#: original's schema): each has its own goldens.
FULL_PRESETS = ("standard", "original")
FULL_SUITES = ("default", "examples/prompts/capitals.toml")
#: Value classes the golden compares, and the Tolerances field that bounds each (raw: the
#: raw decoding point's own fields).
BOUNDS = {
    "entropy": "entropy",
    "probability": "p_top1",
    "final_prob": "final_prob",
    "rank_rel": "rank_rel",
    "top1_gap": "near_tie",
}
_PROBABILITY_KEYS = {"p_top1", "p_top2", "p_answer", "final_p_top1", "final_p_top2"}


def _full_models() -> list[str]:
    from lenscheck.models import EMBEDDED_ALIAS, SYNTHETIC_ALIASES
    from lenscheck.models.gemma3 import GEMMA3_ALIAS, missing_gemma3_packages

    # The opt-in Gemma-3 model where its packages are installed.
    return [
        EMBEDDED_ALIAS,
        *SYNTHETIC_ALIASES,
        *([] if missing_gemma3_packages() else [GEMMA3_ALIAS]),
    ]


@dataclass(frozen=True)
class Change:
    """A benign change: a name, the config changes, and what to do to the loaded backend."""

    name: str
    threads: int = 1
    backend: str = "transformers"
    attn: str | None = None
    alone: bool = False


def all_changes() -> dict[str, Change]:
    cores = os.cpu_count() or 1
    changes = [
        Change("eager", attn="eager"),
        Change("threads-2", threads=2),
        Change(f"threads-all ({cores})", threads=cores),
        Change("alone"),
        Change("transformer-lens", backend="transformer-lens"),
        Change("hooked-transformer", backend="hooked-transformer"),
    ]
    if cores <= 2:  # "all" is "2": measured once
        changes = [c for c in changes if not c.name.startswith("threads-all")]
    return {c.name.split(" ")[0]: c for c in changes}


@dataclass
class Pairing:
    """One model, suite and change against the baseline."""

    model: str
    suite: str
    change: str
    #: (class, point) -> largest |difference|
    deltas: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    values: int = 0
    top1_changes: int = 0
    alarms: list[str] = field(default_factory=list)
    kl_bits: float = 0.0


def _leaves(tree: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _leaves(value, (*path, i))
    else:
        yield path, tree


def classify(path: tuple[Any, ...], decode_norm: str) -> tuple[str, str] | None:
    """(value class, decoding point) of a leaf of a prompt's golden entry; None: not a
    compared number (ids, layer indices, flags: compared exactly)."""
    keys = [p for p in path if isinstance(p, str)]
    if keys[0] == "metrics":
        return classify_metric(keys, decode_norm)
    if "decoding" in keys:
        point = keys[keys.index("decoding") + 1]
    elif keys[0] in ("probes", "temperature", "final_prediction") or "other_bos" in keys:
        point = "model"
    else:
        point = f"lens ({decode_norm})"
    leaf = keys[-1]
    if keys[0] == "final_prediction" and leaf == "top5":
        return "final_prob", point
    if leaf == "entropy":
        return "entropy", point
    if leaf in _PROBABILITY_KEYS:
        return "probability", point
    if leaf == "answer_rank":
        return "rank_rel", point
    return None


#: The golden ``metrics`` section's parts and the file kind of their declarations.
_METRIC_PARTS = {
    "next_token": "pure",
    "rawlens": "rawlens",
    "milestones": "milestones",
    "raw_lens_summary": "json",
}


def classify_metric(keys: list[str], decode_norm: str) -> tuple[str, str] | None:
    """(``m:`` + the declaration's tolerance class, point) of a leaf of the ``metrics``
    section: ``raw`` where the value reads the raw lens, else the run's lens point."""
    from lenscheck.metrics.table import METRICS

    if len(keys) < 3 or keys[1] not in _METRIC_PARTS:
        return None
    file, name = _METRIC_PARTS[keys[1]], keys[2]
    by = "column" if file in ("pure", "rawlens") else "name"
    m = next((m for m in METRICS if m.file == file and getattr(m, by) == name), None)
    if m is None or (m.tolerance == "exact" and m.column == "layer"):
        return None  # undeclared (compared exactly) or the row's layer index
    return f"m:{m.tolerance}", "raw" if m.raw else f"lens ({decode_norm})"


def _gaps(entry: dict[str, Any]) -> dict[tuple[Any, ...], tuple[float, tuple[Any, ...]]]:
    """Per top-1 leaf path: its golden p_top1 - p_top2 gap and the path of its p_top1."""
    out = {}
    for path, value in _leaves(entry):
        if isinstance(value, str) and "top1" in path:
            i = path.index("top1")
            p1_path = (*path[:i], "p_top1", *path[i + 1 :])
            p1, p2 = _get(entry, p1_path), _get(entry, (*path[:i], "p_top2", *path[i + 1 :]))
            if isinstance(p1, float) and isinstance(p2, float):
                out[path] = (p1 - p2, p1_path)
    return out


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        try:
            tree = tree[key]
        except (KeyError, IndexError, TypeError):
            return None
    return tree


def pair(base: dict[str, Any], run: dict[str, Any], pairing: Pairing) -> None:
    """Every numeric leaf of every prompt: |difference| by class and point; top-1 changes
    with their golden gap (class ``top1_gap``)."""
    decode_norm = str(base.get("decode_norm"))
    for pid, g in base["prompts"].items():
        o = run["prompts"][pid]
        gaps = _gaps(g)
        for path, a in _leaves(g):
            b = _get(o, path)
            if isinstance(a, str) and path in gaps:
                if a != b:
                    gap, p1_path = gaps[path]
                    pairing.top1_changes += 1
                    point = classify(p1_path, decode_norm)
                    key = ("top1_gap", point[1] if point else "?")
                    pairing.deltas[key] = max(pairing.deltas[key], gap)
                continue
            if isinstance(a, bool) or not isinstance(a, (int, float)):
                continue
            if isinstance(b, bool) or not isinstance(b, (int, float)):
                # A value that vanished or appeared (an optional cell): compare_golden
                # reports it; no |difference| to measure.
                continue
            cls = classify(path, decode_norm)
            if cls is None:
                continue
            pairing.values += 1
            if cls[0] in ("rank_rel", "m:rank"):
                delta = abs(float(b) - a) / max(abs(a), 1)
            elif cls[0] == "m:divergence" and _relative(a, cls[1]):
                cls, delta = ("m:divergence_rel", cls[1]), abs(float(b) - a) / abs(a)
            else:
                delta = abs(float(b) - a)
            pairing.deltas[cls] = max(pairing.deltas[cls], delta)


def _relative(golden: float, point: str) -> bool:
    """Whether a divergence's float32 tolerance is its relative one (its golden value is
    large enough that ``divergence_rel`` times it exceeds the entropy tolerance): such a
    value is measured as |difference| / |golden|, class ``m:divergence_rel``."""
    from lenscheck.golden.tolerances import DEFAULT_TOLERANCES

    tol = DEFAULT_TOLERANCES["cpu-float32"].for_point("raw" if point == "raw" else "")
    return tol.divergence_rel * abs(golden) > tol.entropy


def tolerance_of(tol: Any, cls: str, point: str) -> float:
    """The tolerance lenscheck applies to ``cls`` at ``point`` (``m:rank``: the relative
    rank slack, as ``rank_rel``; ``m:divergence_rel``: the relative divergence one;
    ``m:exact``: 0)."""
    if point.startswith("lens ("):
        point = point[len("lens (") : -1]
    if cls == "m:rank":
        cls = "rank_rel"
    elif cls == "m:divergence_rel":
        return float(tol.for_point(point).divergence_rel)
    elif cls.startswith("m:"):
        from lenscheck.metrics.table import class_tolerance

        return class_tolerance(cls[2:], tol, raw=point == "raw")
    return float(getattr(tol.for_point(point), BOUNDS[cls]))


def _documents(
    model: str, suite: Any, change: Change | None, preset: str
) -> tuple[dict[str, Any], float] | None:
    """The golden document of ``model`` on ``suite`` under ``change`` (None: the baseline),
    and the largest last-layer KL; None when the backend cannot load the model."""
    import torch

    import lenscheck.runner as runner
    from lenscheck.backends import UNSUPPORTED
    from lenscheck.backends.hf import transformers_model
    from lenscheck.config import LensConfig
    from lenscheck.golden.payload import PromptFiles, golden_payload
    from lenscheck.suites import PromptSuite

    change = change or Change("baseline")
    if model in UNSUPPORTED[change.backend]:
        return None
    torch.set_num_threads(change.threads)
    load = runner.load_model

    def patched(spec: str, cfg: Any, **kw: Any) -> Any:
        resolved, backend = load(spec, cfg, **kw)
        if change.attn is not None:
            transformers_model(backend).set_attn_implementation(change.attn)
        return resolved, backend

    groups = [suite]
    if change.alone:
        groups = [PromptSuite(name=suite.name, cases=(c,), source=suite.source) for c in suite]
    files, kl = {}, 0.0
    runner.load_model = patched
    try:
        for group in groups:
            cfg = LensConfig(
                device="cpu",
                heatmap=False,
                backend=change.backend,  # type: ignore[arg-type]
                suite=group,
                preset=preset,  # type: ignore[arg-type]
            )
            result = runner.run_model(model, cfg)
            for cid, r in result.results.items():
                # The sidecars too: the golden's metrics section holds the rawlens columns
                # and the milestones.
                sidecars = runner.sidecar_bytes(r) or (None, None)
                files[cid] = PromptFiles.from_bytes(
                    *runner.output_bytes(r, cfg), source=model, sidecars=sidecars
                )
                kl = max(kl, r.diagnostics["last_layer_consistency"]["kl_bits_max"])
    finally:
        runner.load_model = load
    settings = {k: v for k, v in cfg.settings().items() if k != "preset"}
    return golden_payload(files, model=model, suite=suite.name, settings=settings), kl


def _pairing(
    base: dict[str, Any], got: tuple[dict[str, Any], float], model: str, suite: str, change: Change
) -> Pairing:
    """A changed run against the baseline: its differences and its alarms."""
    from lenscheck.golden.compare import compare_golden
    from lenscheck.golden.tolerances import tolerances_for

    pairing = Pairing(model, suite, change.name, kl_bits=got[1])
    pair(base, got[0], pairing)
    tol, _ = tolerances_for(base["class"], got[0]["class"])
    report = compare_golden(base, got[0], tol)
    pairing.alarms = [
        f"{d.section}: {d.where} {d.metric}: {d.golden} vs {d.observed} (tol {d.tolerance})"
        for d in report.drifts
    ]
    return pairing


def measure(
    models: list[str],
    suites: list[str],
    presets: list[str],
    changes: list[Change],
    log: Callable[[str], None],
) -> tuple[list[Pairing], float]:
    """Every model x suite x preset x change against its baseline; the largest last-layer
    KL of any run."""
    from lenscheck.suites import DEFAULT_SUITE, load_suite

    out, kl_max = [], 0.0
    for model, name, preset in ((m, s, p) for m in models for s in suites for p in presets):
        suite = DEFAULT_SUITE if name == "default" else load_suite(ROOT / name)
        base = _documents(model, suite, None, preset)
        assert base is not None  # the transformers backend loads every model
        kl_max = max(kl_max, base[1])
        for change in changes:
            t0 = time.perf_counter()
            try:
                got = _documents(model, suite, change, preset)
            except ImportError as exc:  # a backend whose library is not installed
                log(f"{model} {suite.name}/{preset} {change.name}: skipped: {exc}")
                continue
            if got is not None:
                pairing = _pairing(base[0], got, model, f"{suite.name}/{preset}", change)
                out.append(pairing)
                kl_max = max(kl_max, got[1])
                log(
                    f"{model} {pairing.suite} {change.name}: {pairing.values} values, "
                    f"{len(pairing.alarms)} alarms ({time.perf_counter() - t0:.1f}s)"
                )
    return out, kl_max


#: (class, point, largest benign |difference|, tolerance, tolerance / difference)
Margin = tuple[str, str, float, float, float]


def table(pairings: list[Pairing]) -> dict[tuple[str, str], dict[str, float]]:
    """(class, point) -> change -> the largest |difference| over models and suites."""
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for p in pairings:
        for key, value in p.deltas.items():
            out[key][p.change] = max(out[key].get(p.change, 0.0), value)
    return out


def margins(pairings: list[Pairing], kl_max: float) -> list[tuple[str, str, float, float, float]]:
    """(class, point, largest benign |difference|, tolerance, tolerance / difference)."""
    from lenscheck.golden.tolerances import DEFAULT_TOLERANCES

    tol = DEFAULT_TOLERANCES["cpu-float32"]
    rows = []
    for (cls, point), by_change in sorted(table(pairings).items()):
        worst = max(by_change.values())
        bound = tolerance_of(tol, cls, point)
        rows.append((cls, point, worst, bound, bound / worst if worst else math.inf))
    rows.append(
        (
            "kl_consistency",
            "final",
            kl_max,
            tol.kl_consistency,
            tol.kl_consistency / kl_max if kl_max else math.inf,
        )
    )
    return rows


def problems(
    pairings: list[Pairing], rows: list[tuple[str, str, float, float, float]]
) -> list[str]:
    out = [f"{p.model} {p.suite} {p.change}: alarm: {a}" for p in pairings for a in p.alarms]
    out += [
        f"{cls} at {point}: tolerance {bound:g} is {ratio:.2g}x the largest benign "
        f"difference {worst:g} (< {MARGIN:g}x)"
        for cls, point, worst, bound, ratio in rows
        if ratio < MARGIN
    ]
    return out


def markdown(pairings: list[Pairing], kl_max: float, command: str) -> str:
    """The benign-difference table and the margins, as docs/tolerances.md quotes them."""
    data = table(pairings)
    changes = list(dict.fromkeys(p.change for p in pairings))
    lines = [
        f"Regenerate: `{command}`",
        "",
        "Largest |difference| against the baseline (transformers, SDPA, 1 thread, the whole "
        "suite), over "
        + ", ".join(sorted({p.model for p in pairings}))
        + " on "
        + ", ".join(sorted({p.suite for p in pairings}))
        + "; `rank_rel`: |Δrank| / rank; `top1_gap`: the largest golden p(top-1) − p(top-2) "
        "at which a top-1 changed (0: none changed).",
        "",
        "| class | point | " + " | ".join(changes) + " |",
        "|---|---|" + "---|" * len(changes),
    ]
    for (cls, point), by_change in sorted(data.items()):
        cells = [f"{by_change[c]:.3g}" if c in by_change else "-" for c in changes]
        lines.append(f"| {cls} | {point} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Margins (cpu-float32 tolerances; each must be >= {MARGIN:g}x):",
        "",
        "| class | point | largest benign difference | tolerance | margin |",
        "|---|---|---|---|---|",
    ]
    for cls, point, worst, bound, ratio in margins(pairings, kl_max):
        shown = "inf" if math.isinf(ratio) else f"{ratio:.3g}x"
        lines.append(f"| {cls} | {point} | {worst:.3g} | {bound:g} | {shown} |")
    alarms = sum(len(p.alarms) for p in pairings)
    lines += ["", f"Alarms (drift against the baseline with these tolerances): {alarms}."]
    return "\n".join(lines) + "\n"


def splice(path: Path, name: str, text: str) -> None:
    """Replace what lies between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in
    ``path`` with ``text``: each calibration script regenerates its own part of one doc."""
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    doc = path.read_text(encoding="utf-8")
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path}: expected the markers {begin.strip()} and {end}; add them")
    head, rest = doc.split(begin, 1)
    path.write_text(head + begin + text + rest[rest.index(end) :], encoding="utf-8")


def save(path: Path, pairings: list[Pairing], kl_max: float) -> None:
    """The measurement as JSON (what ``--from-json`` reads back)."""
    rows = [
        {
            "model": p.model,
            "suite": p.suite,
            "change": p.change,
            "values": p.values,
            "top1_changes": p.top1_changes,
            "alarms": p.alarms,
            "kl_bits": p.kl_bits,
            "deltas": {f"{c}@{pt}": v for (c, pt), v in p.deltas.items()},
        }
        for p in pairings
    ]
    path.write_text(json.dumps({"kl_max": kl_max, "pairings": rows}, indent=1), encoding="utf-8")


def load(path: Path) -> tuple[list[Pairing], float]:
    """A saved measurement, its alarms recomputed with lenscheck's current tolerances: a
    value class whose largest |difference| exceeds its tolerance (a top-1 that changed at a
    golden gap of at least the near-tie gap) alarms. A live run asks compare_golden."""
    from lenscheck.golden.tolerances import DEFAULT_TOLERANCES

    tol = DEFAULT_TOLERANCES["cpu-float32"]
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for row in data["pairings"]:
        p = Pairing(row["model"], row["suite"], row["change"], kl_bits=row["kl_bits"])
        p.values, p.top1_changes = row["values"], row["top1_changes"]
        for key, value in row["deltas"].items():
            cls, point = key.split("@", 1)
            p.deltas[(cls, point)] = value
            bound = tolerance_of(tol, cls, point)
            if value > bound or (cls == "top1_gap" and value >= bound):
                p.alarms.append(f"{cls} at {point}: {value:g} > tolerance {bound:g}")
        out.append(p)
    return out, float(data["kl_max"])


def only_metrics(pairing: Pairing) -> Pairing:
    """``pairing`` with only the golden metrics section's classes (``m:``) and alarms."""
    out = Pairing(pairing.model, pairing.suite, pairing.change, kl_bits=pairing.kl_bits)
    out.values, out.top1_changes = pairing.values, pairing.top1_changes
    out.deltas.update({k: v for k, v in pairing.deltas.items() if k[0].startswith("m:")})
    out.alarms = [a for a in pairing.alarms if a.startswith(("metrics", "m:"))]
    return out


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated (default: a small set)")
    parser.add_argument("--suites", help="comma-separated: default and suite files")
    parser.add_argument("--presets", help="comma-separated (default: standard)")
    parser.add_argument("--changes", help="comma-separated, of " + ", ".join(all_changes()))
    parser.add_argument("--full", action="store_true", help="every offline model and suite")
    parser.add_argument("--json", type=Path, help="write the measurement here")
    parser.add_argument(
        "--from-json", type=Path, help="check a saved measurement instead of measuring"
    )
    parser.add_argument(
        "--markdown", type=Path, help="write the tables between this doc's markers (--section)"
    )
    parser.add_argument(
        "--metrics-only",
        action="store_true",
        help="keep only the golden metrics section's classes (m:...): the extended schema's "
        "measurements; their tables go between the metric-changes markers",
    )
    return parser.parse_args(argv)


def _measure(args: argparse.Namespace) -> tuple[list[Pairing], float]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    full = args.full
    models = args.models.split(",") if args.models else _full_models() if full else SMALL_MODELS
    suites = args.suites.split(",") if args.suites else FULL_SUITES if full else SMALL_SUITES
    presets = args.presets.split(",") if args.presets else FULL_PRESETS[: 2 if full else 1]
    known = all_changes()
    changes = [known[c] for c in args.changes.split(",")] if args.changes else list(known.values())
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    return measure(list(models), list(suites), list(presets), changes, log)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    t0 = time.perf_counter()
    pairings, kl_max = load(args.from_json) if args.from_json else _measure(args)
    if args.metrics_only:
        pairings = [only_metrics(p) for p in pairings]
    given = argv if argv is not None else sys.argv[1:]
    text = markdown(pairings, kl_max, " ".join(["python benchmarks/calibrate.py", *given]))
    print(text)
    found = problems(pairings, margins(pairings, kl_max))
    for line in found:
        print(f"FAIL {line}")
    print(f"calibration: {len(pairings)} pairings in {time.perf_counter() - t0:.0f}s")
    if args.markdown:
        splice(args.markdown, "metric-changes" if args.metrics_only else "benign-changes", text)
    if args.json:
        save(args.json, pairings, kl_max)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
