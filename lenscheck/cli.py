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

from lenscheck._version import __version__
from lenscheck.options import add_cli_arguments, cli_argv, cli_values, config_from_values

# Imported inside the commands that need them, so that `lenscheck --help`, `validate` and
# `diff` stay fast: lenscheck.runner (torch; tests also replace its run_model), rich (the run
# summary table), lenscheck.models and lenscheck.env (the model cache: platformdirs, filelock),
# lenscheck.diff and lenscheck.schema (the golden comparison, the CSV reader).

__all__ = ["build_parser", "main"]

log = logging.getLogger("lenscheck")

#: Exit status of a run stopped with Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130


def _models_help() -> str:
    from lenscheck.models import EMBEDDED_ALIAS, GEMMA3_ALIAS, QWEN2_ALIAS, SYNTHETIC_ALIASES
    from lenscheck.models.resolve import SYNTHETIC_GROUP

    return (
        f"a hub id ('org/name'), a local checkpoint folder (with config.json), or an offline "
        f"alias: {EMBEDDED_ALIAS} (the default), {GEMMA3_ALIAS}, {QWEN2_ALIAS}, "
        f"{SYNTHETIC_GROUP} (every synthetic family) or one of {', '.join(SYNTHETIC_ALIASES)}"
    )


def _add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the logit lens on one or more models",
        description="Run the logit lens; writes JSON + two CSVs + a heatmap per model and prompt.",
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help=_models_help())
    p.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where to write (default: ./run-latest, which a successful run rotates)",
    )
    add_cli_arguments(p)
    p.add_argument(
        "--prompt", default=None, metavar="TEXT", help="one prompt to read (with --answer)"
    )
    p.add_argument(
        "--answer",
        default=None,
        metavar="TEXT",
        help="the token expected after --prompt (it sets is_answer and L_semantic)",
    )
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--summary-json", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")


def _add_validate(sub: Any) -> None:
    v = sub.add_parser(
        "validate",
        help="check lens CSV files against the schema",
        description="Print every violation (file, row, column, problem) to stderr and one "
        "OK / N violation(s) line per file to stdout. Exit 1 if any file has one.",
    )
    v.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="CSV",
        help="records or pure next-token CSV files (output-<name>-records.csv, "
        "output-<name>-pure-next-token.csv)",
    )


def _add_env(sub: Any) -> None:
    e = sub.add_parser(
        "env",
        help="versions, devices and the model cache of this environment",
        description="Report Python, lenscheck, torch, transformers, transformer-lens and "
        "syrupy versions, the devices torch sees, the model cache folder and whether the "
        "embedded model is provisioned. Loads no model.",
    )
    e.add_argument(
        "--format", choices=["text", "json"], default="text", help="output format (default: text)"
    )


def _add_diff(sub: Any) -> None:
    d = sub.add_parser(
        "diff",
        help="compare two runs, two output files, or a run against a golden",
        description="Exit 0 within tolerance, 1 on drift, 2 on unreadable input.",
    )
    d.add_argument("old", type=Path, help="run folder, output file or golden file")
    d.add_argument("new", type=Path, help="run folder, output file or golden file")
    d.add_argument(
        "--format",
        choices=["text", "json", "markdown"],
        default="text",
        help="text for a terminal, json for machines, markdown for a CI job summary "
        "(default: text)",
    )
    d.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="'CLASS FIELD=VALUE'",
        help="override a tolerance, e.g. 'cpu-float32 entropy=1e-3' (repeatable)",
    )


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
    for add in (_add_run, _add_validate, _add_env, _add_diff):
        add(sub)
    return parser


def _one_off(args: argparse.Namespace, values: dict[str, Any]) -> dict[str, Any]:
    """The suite of ``--prompt``/``--answer`` as a fixed field (empty without them)."""
    if (args.prompt is None) != (args.answer is None):
        raise ValueError(
            "--prompt and --answer go together: --prompt TEXT --answer TEXT, where the answer "
            "is the token expected after the prompt (it sets is_answer and L_semantic)"
        )
    if args.prompt is None:
        return {}
    if "suite" in values:
        raise ValueError("give either --prompts FILE or --prompt TEXT --answer TEXT, not both")
    from lenscheck.suites import PromptSuite

    return {"suite": PromptSuite.one_off(args.prompt, args.answer)}


def _config(args: argparse.Namespace) -> Any:
    values = cli_values(args)
    return config_from_values(values, **_one_off(args, values))


def _subprocess_cmd(spec: str, args: argparse.Namespace, out_dir: Path, summary: Path) -> list[str]:
    cmd = [sys.executable, "-m", "lenscheck", "run", "--in-process", "--out-dir", str(out_dir)]
    cmd += cli_argv(cli_values(args))
    if args.prompt is not None:
        cmd += ["--prompt", args.prompt, "--answer", args.answer]
    if args.verbose:
        cmd.append("-" + "v" * args.verbose)
    return [*cmd, "--summary-json", str(summary), spec]


def _run_one(spec: str, args: argparse.Namespace, out_dir: Path) -> list[dict[str, Any]]:
    from lenscheck.progress import model_progress
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
    # Names only: the folder may still be the staged one that becomes run-latest/ when the
    # run succeeds; the summary's title names where the files end up.
    log.info("wrote %s", ", ".join(p.name for p in written))
    return [_summary_row(spec, run, case.id) for case in run.suite.cases]


def _summary_row(spec: str, run: Any, case_id: str) -> dict[str, Any]:
    result = run.results[case_id]
    diag = result.diagnostics
    top = result.json_data["final_prediction"]["topk"][0]
    return {
        "model": spec,
        "prompt": case_id,
        "status": "ok",
        "L_copy": diag["L_copy"],
        "L_semantic": diag["L_semantic"],
        "top1": f"{top[0]!r} ({top[1]:.2f})",
        "seconds": f"{run.timings['total_s']:.1f}",
    }


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
        if code == INTERRUPTED:
            raise KeyboardInterrupt
        if code == 0 and summary.exists():
            rows: list[dict[str, Any]] = json.loads(summary.read_text(encoding="utf-8"))
            return rows
    return [{"model": spec, "status": f"failed ({code})"}]


def _run_models(specs: list[str], args: argparse.Namespace, out_dir: Path) -> list[dict[str, Any]]:
    if args.in_process or len(specs) == 1:
        rows = _run_one(specs[0], args, out_dir)
        if args.summary_json is not None:
            args.summary_json.write_text(json.dumps(rows), encoding="utf-8")
        return rows
    return [row for spec in specs for row in _run_child(spec, args, out_dir)]


def _cmd_run(args: argparse.Namespace) -> int:
    from lenscheck.device import resolve_device
    from lenscheck.models import expand_model_list
    from lenscheck.runner import check_out_dir

    specs = expand_model_list(",".join(args.models)) if args.models else ["embedded"]
    cfg = _config(args)  # validate options before creating directories or loading anything
    resolve_device(cfg.device)  # a missing device: exit 2, nothing written
    if args.out_dir is not None:
        rows = _run_models(specs, args, check_out_dir(args.out_dir))
        if not args.in_process:
            _summary(rows, args.out_dir)
        return 0 if _all_ok(rows) else 1
    from lenscheck.artifacts import staged_run_latest

    with staged_run_latest(check_out_dir(Path.cwd())) as stage:
        rows = _run_models(specs, args, stage.folder)
        stage.succeeded = _all_ok(rows)
        stage.reason = ", ".join(
            f"{r['model']}: {r['status']}" for r in rows if r["status"] != "ok"
        )
    _summary(rows, stage.final)
    return 0 if stage.succeeded else 1


def _all_ok(rows: list[dict[str, Any]]) -> bool:
    return all(r["status"] == "ok" for r in rows)


def _cmd_validate(args: argparse.Namespace) -> int:
    from lenscheck.schema import validate_csv

    bad = 0
    for path in args.files:
        violations = validate_csv(path)
        bad += bool(violations)
        for v in violations:
            print(v, file=sys.stderr)
        print(f"{path}: {'OK' if not violations else f'{len(violations)} violation(s)'}")
    return 1 if bad else 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from lenscheck.diff import (
        DiffInputError,
        diff_paths,
        render_all,
        reports_json,
        reports_markdown,
    )
    from lenscheck.golden.tolerances import parse_overrides

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


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is the whole story: one line, exit 2, no traceback."""
    from lenscheck.norms import UnsupportedNormError
    from lenscheck.selftest import SelfTestError

    return (
        ValueError,
        LookupError,
        RuntimeError,
        OSError,
        ImportError,  # an optional library is missing; the message names what to install
        ArithmeticError,
        SelfTestError,
        UnsupportedNormError,
    )


def _setup_logging(verbosity: int) -> None:
    from lenscheck.progress import install_log_handler

    logging.basicConfig(
        level=logging.DEBUG if verbosity > 1 else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("transformers", "transformer_lens", "httpx", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    install_log_handler()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lenscheck`` console script."""
    args = build_parser().parse_args(argv)
    _setup_logging(getattr(args, "verbose", 0))
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        # One line: where the run stood is in the progress output above, and no file of
        # it is half-written (every set of files is staged and renamed together).
        log.error(
            "interrupted (Ctrl-C): no output file was left half-written and run-latest/ was "
            "not rotated"
        )
        return INTERRUPTED
    except _expected_errors() as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
