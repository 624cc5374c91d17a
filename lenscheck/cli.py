"""The ``lenscheck`` console script: ``run`` the lens, ``validate`` CSVs, ``diff`` runs,
``env`` reports the environment."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lenscheck import __version__
from lenscheck.artifacts import setup_run_latest_directory
from lenscheck.collapse import DEFAULT_COPY_MARGIN, DEFAULT_COPY_THRESHOLD
from lenscheck.config import BACKENDS, LensConfig
from lenscheck.device import DEVICES, resolve_device
from lenscheck.diff import DiffInputError, diff_paths, render_all, reports_json, reports_markdown
from lenscheck.golden.tolerances import parse_overrides
from lenscheck.norms import DECODE_NORMS, UnsupportedNormError
from lenscheck.progress import install_log_handler, model_progress
from lenscheck.schema import validate_csv
from lenscheck.selftest import SelfTestError
from lenscheck.suites import PromptSuite, load_suite

# Imported inside the commands that need them, so that `lenscheck --help`, `validate` and
# `diff` stay fast: lenscheck.runner (torch; tests also replace its run_model), rich (the run
# summary table), lenscheck.models and lenscheck.env (the model cache: platformdirs, filelock).

__all__ = ["build_parser", "main"]

log = logging.getLogger("lenscheck")


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def _add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the logit lens on one or more models",
        description="Run the logit lens; writes JSON + two CSVs + a heatmap per model and prompt.",
    )
    p.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="hub id, local checkpoint dir, 'embedded' or 'synthetic-*' (default: embedded)",
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=list(DEVICES),
        help="compute device; auto prefers cuda, then mps, then cpu; an explicit device that "
        "is not available is an error (default: auto)",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        help="compute dtype: auto (cuda fp16, Gemma bf16, mps fp16, cpu fp32), float32, "
        "float16 or bfloat16",
    )
    p.add_argument(
        "--backend",
        default="transformers",
        choices=list(BACKENDS),
        help="model library the lens reads residuals through (default: transformers)",
    )
    p.add_argument(
        "--out-dir", type=Path, default=None, help="where to write (default: rotate ./run-latest)"
    )
    p.add_argument(
        "--copy-threshold",
        type=_unit_float,
        default=DEFAULT_COPY_THRESHOLD,
        help=f"minimum p(top-1) for copy collapse (default: {DEFAULT_COPY_THRESHOLD})",
    )
    p.add_argument(
        "--copy-margin",
        type=_unit_float,
        default=DEFAULT_COPY_MARGIN,
        help=f"required p(top-1) - p(top-2) for copy collapse (default: {DEFAULT_COPY_MARGIN})",
    )
    p.add_argument("--fp32-unembed", action="store_true", help="unembed in fp32 whatever the dtype")
    p.add_argument(
        "--keep-residuals",
        action="store_true",
        help="also write every layer's residual (safetensors)",
    )
    p.add_argument(
        "--self-test",
        action="store_true",
        help="check norm re-application and last-layer consistency before writing",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model repositories to run their own code (off by default)",
    )
    p.add_argument("--device-map", default=None, help="accelerate device_map, e.g. 'auto'")
    p.add_argument("--no-heatmap", action="store_true", help="skip the PNG heatmap")
    p.add_argument(
        "--prompts",
        type=Path,
        default=None,
        metavar="FILE",
        help="prompt suite (TOML: [[prompts]] with id, prompt, answer, optional probes); "
        "writes output-<name>-<prompt id>.* per prompt (default: the built-in prompt)",
    )
    p.add_argument("--prompt", default=None, metavar="TEXT", help="one prompt (with --answer)")
    p.add_argument(
        "--answer", default=None, metavar="TEXT", help="the expected next token of --prompt"
    )
    p.add_argument(
        "--decode-norm",
        default="next-ln1",
        choices=list(DECODE_NORMS),
        help="where each layer is decoded: next-ln1 (the norm the model applies next, the "
        "original's rule), final (the final norm at every layer) or raw (default: next-ln1)",
    )
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--summary-json", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")


def _version_text() -> str:
    """``lenscheck --version``: the installed distribution's version (the package's own
    ``__version__`` when run from a source tree that is not installed)."""
    try:
        number = version("lenscheck")
    except PackageNotFoundError:
        number = __version__
    return f"lenscheck {number}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (built on demand: nothing is parsed at import time)."""
    parser = argparse.ArgumentParser(prog="lenscheck", description="Logit-lens drift checks.")
    parser.add_argument("--version", action="version", version=_version_text())
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    v = sub.add_parser(
        "validate",
        help="check lens CSV files against the schema",
        description="Print every violation (file, row, column, problem) to stderr and one "
        "OK / N violation(s) line per file to stdout. Exit 1 if any file has one.",
    )
    v.add_argument("files", nargs="+", type=Path)
    e = sub.add_parser(
        "env",
        help="versions, devices and the model cache of this environment",
        description="Report Python, lenscheck, torch, transformers, transformer-lens and "
        "syrupy versions, the devices torch sees, the model cache folder and whether the "
        "embedded model is provisioned. Loads no model.",
    )
    e.add_argument("--format", choices=["text", "json"], default="text")
    d = sub.add_parser(
        "diff",
        help="compare two runs, two output files, or a run against a golden",
        description="Exit 0 within tolerance, 1 on drift, 2 on unreadable input.",
    )
    d.add_argument("old", type=Path, help="run folder, output file or golden file")
    d.add_argument("new", type=Path, help="run folder, output file or golden file")
    d.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    d.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="'CLASS FIELD=VALUE'",
        help="override a tolerance, e.g. 'cpu-float32 entropy=1e-3' (repeatable)",
    )
    return parser


def _suite(args: argparse.Namespace) -> Any:
    """The prompts of this run: --prompts FILE, --prompt/--answer, or the built-in suite."""
    if args.prompts is not None and (args.prompt is not None or args.answer is not None):
        raise ValueError("give either --prompts FILE or --prompt TEXT --answer TEXT, not both")
    if args.prompts is not None:
        return load_suite(args.prompts)
    if (args.prompt is None) != (args.answer is None):
        raise ValueError(
            "--prompt and --answer go together: --prompt TEXT --answer TEXT, where the answer "
            "is the expected next token (it sets is_answer and L_semantic)"
        )
    if args.prompt is not None:
        return PromptSuite.one_off(args.prompt, args.answer)
    return None


def _config(args: argparse.Namespace) -> Any:
    return LensConfig(
        suite=_suite(args),
        decode_norm=args.decode_norm,
        device=args.device,
        dtype=args.dtype,
        backend=args.backend,
        copy_threshold=args.copy_threshold,
        copy_margin=args.copy_margin,
        fp32_unembed=args.fp32_unembed,
        keep_residuals=args.keep_residuals,
        self_test=args.self_test,
        trust_remote_code=args.trust_remote_code,
        heatmap=not args.no_heatmap,
        device_map=args.device_map,
    )


def _out_dir(args: argparse.Namespace) -> Path:
    from lenscheck.runner import check_out_dir

    if args.out_dir is not None:
        return check_out_dir(args.out_dir)
    check_out_dir(Path.cwd())
    return Path(setup_run_latest_directory(Path.cwd()))


def _run_one(spec: str, args: argparse.Namespace, out_dir: Path) -> list[dict[str, Any]]:
    from lenscheck.runner import run_model

    cfg = _config(args)
    with model_progress(spec, verbose=args.verbose) as note:

        def stage(name: str) -> None:
            note(name)
            # What exists between stages (modules, then the model) stays alive until exit:
            # taking it out of the cycle collector's view saves its full passes (~0.4 s each
            # once the embedded model is loaded, measured) over objects it can never free.
            # Only in this one-shot process: a library caller may load and drop many models.
            gc.freeze()

        run = run_model(spec, cfg, out_dir, stage=stage)
    written = [p for paths in run.paths.values() for p in paths.all() if p.exists()]
    log.info("wrote %s", ", ".join(map(str, written)))
    rows = []
    for case in run.suite.cases:
        result = run.results[case.id]
        diag = result.diagnostics
        top = result.json_data["final_prediction"]["topk"][0]
        rows.append(
            {
                "model": spec,
                "prompt": case.id,
                "status": "ok",
                "L_copy": diag["L_copy"],
                "L_semantic": diag["L_semantic"],
                "top1": f"{top[0]!r} ({top[1]:.2f})",
                "seconds": f"{run.timings['total_s']:.1f}",
            }
        )
    return rows


def _subprocess_cmd(spec: str, args: argparse.Namespace, out_dir: Path, summary: Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "lenscheck",
        "run",
        "--in-process",
        "--out-dir",
        str(out_dir),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--backend",
        args.backend,
        "--copy-threshold",
        repr(args.copy_threshold),
        "--copy-margin",
        repr(args.copy_margin),
        "--decode-norm",
        args.decode_norm,
        *(["-" + "v" * args.verbose] if args.verbose else []),
    ]
    flags = {
        "--fp32-unembed": args.fp32_unembed,
        "--keep-residuals": args.keep_residuals,
        "--self-test": args.self_test,
        "--trust-remote-code": args.trust_remote_code,
        "--no-heatmap": args.no_heatmap,
    }
    cmd += [flag for flag, on in flags.items() if on]
    if args.device_map:
        cmd += ["--device-map", args.device_map]
    if args.prompts is not None:
        cmd += ["--prompts", str(args.prompts)]
    if args.prompt is not None:
        cmd += ["--prompt", args.prompt, "--answer", args.answer]
    return [*cmd, "--summary-json", str(summary), spec]


_COLUMNS = ("model", "prompt", "status", "L_copy", "L_semantic", "top1", "seconds")


def _summary(rows: list[dict[str, Any]], out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"lenscheck run -> {out_dir}")
    for col in _COLUMNS:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in _COLUMNS))
    Console(stderr=False).print(table)


def _run_child(spec: str, args: argparse.Namespace, out_dir: Path) -> list[dict[str, Any]]:
    """One model in its own process (memory isolation, as the original did); its summary
    rows come back through a JSON file."""
    with tempfile.TemporaryDirectory(prefix="lenscheck-summary-") as tmp:
        summary = Path(tmp) / "rows.json"
        code = subprocess.run(_subprocess_cmd(spec, args, out_dir, summary), check=False).returncode
        if code == 0 and summary.exists():
            rows: list[dict[str, Any]] = json.loads(summary.read_text(encoding="utf-8"))
            return rows
    return [{"model": spec, "status": f"failed ({code})"}]


def _cmd_run(args: argparse.Namespace) -> int:
    from lenscheck.models import expand_model_list

    specs = expand_model_list(",".join(args.models)) if args.models else ["embedded"]
    _config(args)  # validate options before creating directories or loading anything
    resolve_device(args.device)  # a missing device: exit 2, nothing written
    out_dir = _out_dir(args)
    if args.in_process or len(specs) == 1:
        rows = _run_one(specs[0], args, out_dir)
        if args.summary_json is not None:
            args.summary_json.write_text(json.dumps(rows), encoding="utf-8")
        if not args.in_process:
            _summary(rows, out_dir)
        return 0
    rows = [row for spec in specs for row in _run_child(spec, args, out_dir)]
    _summary(rows, out_dir)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _cmd_validate(args: argparse.Namespace) -> int:
    bad = 0
    for path in args.files:
        violations = validate_csv(path)
        bad += bool(violations)
        for v in violations:
            print(v, file=sys.stderr)
        print(f"{path}: {'OK' if not violations else f'{len(violations)} violation(s)'}")
    return 1 if bad else 0


def _cmd_diff(args: argparse.Namespace) -> int:
    try:
        reports = diff_paths(args.old, args.new, overrides=parse_overrides(args.tolerance))
    except (DiffInputError, ValueError) as exc:
        print(f"lenscheck diff: {exc}", file=sys.stderr)
        return 2
    render = {"json": reports_json, "markdown": reports_markdown, "text": render_all}
    print(render[args.format](reports))
    return 0 if all(r.ok and r.identity_ok for r in reports) else 1


def _cmd_env(args: argparse.Namespace) -> int:
    from lenscheck.env import collect, render_json, render_text

    info = collect()
    print(render_json(info) if args.format == "json" else render_text(info))
    return 0


_COMMANDS = {"run": _cmd_run, "validate": _cmd_validate, "diff": _cmd_diff, "env": _cmd_env}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lenscheck`` console script."""
    args = build_parser().parse_args(argv)
    verbosity = getattr(args, "verbose", 0)
    logging.basicConfig(
        level=logging.DEBUG if verbosity > 1 else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("transformers", "transformer_lens", "httpx", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    install_log_handler()
    expected = (
        ValueError,
        LookupError,
        RuntimeError,
        OSError,
        ImportError,  # an optional library is missing; the message names what to install
        ArithmeticError,
        SelfTestError,
        UnsupportedNormError,
    )
    try:
        return _COMMANDS[args.command](args)
    except expected as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
