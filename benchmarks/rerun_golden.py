"""Rerun the golden suite N times against the committed goldens: does anything ever drift?

Each run is a fresh subprocess (new interpreter, new torch, new model load):

    python -m pytest -m lens --lens-models=embedded,synthetic -q -p no:cacheprovider

from the repository root, offline, against ``golden/``. A run "flags drift" when pytest
exits non-zero or prints a ``lenscheck drift:`` report. Expected: 0 of N. The goldens are
hashed before and after, so a run that rewrote one is caught as well.

    python benchmarks/rerun_golden.py                       # 20 runs, embedded + synthetic
    python benchmarks/rerun_golden.py -n 5 --lens-models=embedded --json out.json
    python benchmarks/rerun_golden.py -n 3 -- -x             # extra pytest arguments after --
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
_COUNTS = re.compile(r"(\d+) (passed|failed|error|errors|skipped|deselected)\b")


@dataclass
class Run:
    """One pytest subprocess: exit code, wall time, outcome counts, drift reports printed."""

    index: int
    returncode: int
    wall_s: float
    passed: int
    failed: int
    errors: int
    drift_reports: int
    summary: str

    @property
    def drift(self) -> bool:
        """Did this run flag drift (or fail in any other way)?"""
        return self.returncode != 0 or self.failed > 0 or self.errors > 0 or self.drift_reports > 0


def golden_digest(golden_dir: Path) -> str:
    """One hash over every golden file's path and bytes."""
    h = hashlib.sha256()
    for path in sorted(golden_dir.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(golden_dir)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _counts(output: str) -> dict[str, int]:
    lines = [ln for ln in output.splitlines() if " in " in ln and _COUNTS.search(ln)]
    counts = {"passed": 0, "failed": 0, "errors": 0}
    for number, word in _COUNTS.findall(lines[-1] if lines else ""):
        key = "errors" if word.startswith("error") else word
        if key in counts:
            counts[key] = int(number)
    return counts


def run_once(index: int, models: str, extra: list[str]) -> Run:
    """One golden-suite run in a fresh interpreter."""
    cmd = [sys.executable, "-m", "pytest", "-m", "lens", f"--lens-models={models}", "-q"]
    cmd += ["-p", "no:cacheprovider", *extra]
    env = {**os.environ, **OFFLINE}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    output = proc.stdout + proc.stderr
    counts = _counts(output)
    summary = next((ln for ln in reversed(output.splitlines()) if ln.strip()), "")
    return Run(
        index=index,
        returncode=proc.returncode,
        wall_s=wall,
        drift_reports=output.count("lenscheck drift:"),
        summary=summary.strip("= "),
        **counts,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20, help="how many runs (default 20)")
    parser.add_argument(
        "--lens-models",
        default="embedded,synthetic",
        help="models, as pytest's --lens-models (default: embedded,synthetic)",
    )
    parser.add_argument("--json", type=Path, help="also write every run as JSON here")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    golden_dir = ROOT / "golden"
    before = golden_digest(golden_dir)
    print(
        f"{args.runs} runs of: pytest -m lens --lens-models={args.lens_models} -q "
        f"-p no:cacheprovider {' '.join(args.pytest_args)} (cwd {ROOT})",
        flush=True,
    )
    runs: list[Run] = []
    for i in range(1, args.runs + 1):
        run = run_once(i, args.lens_models, args.pytest_args)
        runs.append(run)
        flag = "DRIFT" if run.drift else "ok"
        print(
            f"  run {i:2d}/{args.runs}: {flag:5s} rc={run.returncode} {run.wall_s:6.1f} s  "
            f"{run.summary}",
            flush=True,
        )
    after = golden_digest(golden_dir)

    walls = [r.wall_s for r in runs]
    flagged = [r.index for r in runs if r.drift]
    print()
    print(
        f"runs that flagged drift: {len(flagged)} / {len(runs)}"
        + (f" (runs {', '.join(map(str, flagged))})" if flagged else "")
    )
    print(
        f"wall time per run: min {min(walls):.1f} s, median {statistics.median(walls):.1f} s, "
        f"mean {statistics.mean(walls):.1f} s, max {max(walls):.1f} s; total {sum(walls):.0f} s"
    )
    print(f"tests per run: {runs[0].passed} passed (first run)")
    print(f"goldens unchanged: {before == after}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": f"pytest -m lens --lens-models={args.lens_models} -q "
                    "-p no:cacheprovider",
                    "runs": [asdict(r) | {"drift": r.drift} for r in runs],
                    "flagged": len(flagged),
                    "goldens_unchanged": before == after,
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0 if not flagged and before == after else 1


if __name__ == "__main__":
    sys.exit(main())
