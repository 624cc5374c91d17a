"""A one-line fault in the lens makes ``pytest --lens-models=embedded,synthetic`` fail.

Each fault is a real one-line edit of lenscheck's source: the inner project's conftest.py
takes the function's source, replaces one line, compiles it in the module's namespace and
monkeypatches it in for the run (undone at unconfigure). The golden suite then runs against
the goldens committed in ``golden/`` and must fail, naming a metric the fault moved. A
control run with the same conftest and no fault passes, so the failures come from the
fault alone. The runs that load the embedded model (eps-outside-sqrt and its control) are
marked ``slow``, as the project marks every embedded-model test. If lenscheck's source
changes so that a fault's line no longer exists, the inner run stops with a usage error
naming the missing line instead of passing vacuously.

Which models and generated tests catch each fault (asserted below, exactly):

* eps-outside-sqrt (RMSNorm ``rsqrt(ms + eps)`` -> ``1 / (sqrt(ms) + eps)``, run on
  embedded and the synthetic set): test_invariants of embedded and synthetic-llama (the
  re-applied norm differs from the module by 3e-4 and 2e-4 at layer 0, over the 1e-5
  bound), and synthetic-llama's layer-0 entropy (|Δ| 4e-4 > 1e-4) in test_trajectory and
  test_golden_file. Embedded's entropies move less than 1e-4; synthetic-gemma3 (RMSNorm
  too, but its scaled embeddings dwarf eps) moves 4e-6 and passes; the LayerNorm models
  do not use the line.
* wrong-norm-post-block (block i's own ln1 for its output instead of block i+1's): every
  pre-norm model in test_trajectory and test_golden_file; the post-norm OPT is untouched.
* entropy-in-nats (the ``/ LN2`` dropped): every model, in test_trajectory,
  test_final_prediction and test_golden_file.
* layer-off-by-one (``"layer": layer + 1`` in the pure next-token records, the
  trajectory's rows): every model in test_trajectory and
  test_golden_file ("layer index"); models whose golden has a collapse layer also in
  test_collapse (their L_copy moves by one). The "layer index" check is new in
  compare_golden; before it, llama and neox (no collapse layer) passed with this fault.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lenscheck.models import SYNTHETIC_ALIASES
from lenscheck.models.cache import CACHE_ENV_VAR, cache_root

REPO = Path(__file__).resolve().parents[1]
#: Pytester points HOME at its own folder; keep the inner runs on the real model cache.
MODEL_CACHE = cache_root()
BASE_ARGS = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")
ALL = ("embedded", *SYNTHETIC_ALIASES)
RMS = {"embedded", "synthetic-llama", "synthetic-gemma3"}
PRE_NORM = set(ALL) - {"synthetic-opt-postnorm"}

CONFTEST = '''
"""Inject one fault into lenscheck for this run (see tests/test_fault_injection.py)."""
import __future__
import importlib
import inspect
import json
import textwrap

import pytest

PATCHES = json.loads({patches!r})
_mp = pytest.MonkeyPatch()


def _mutant(module, qualname, old, new):
    owner = module
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    source = textwrap.dedent(inspect.getsource(getattr(owner, name)))
    if source.count(old) != 1:
        raise pytest.UsageError(
            f"fault line not found once in {{module.__name__}}.{{qualname}}: {{old!r}}"
        )
    code = compile(
        source.replace(old, new),
        f"<fault in {{module.__name__}}.{{qualname}}>",
        "exec",
        flags=__future__.annotations.compiler_flag,
        dont_inherit=True,
    )
    namespace = dict(vars(module))
    exec(code, namespace)
    return owner, name, namespace[name]


def pytest_configure(config):
    for module_name, qualname, old, new, also in PATCHES:
        owner, name, mutant = _mutant(importlib.import_module(module_name), qualname, old, new)
        _mp.setattr(owner, name, mutant)
        for target in also:  # modules that imported the name
            module_name, attr = target.split(":")
            _mp.setattr(importlib.import_module(module_name), attr, mutant)


def pytest_unconfigure(config):
    _mp.undo()
'''

#: name -> (patches, models to run, {model: failing tests}, texts the output must contain)
FAULTS: dict[str, tuple[list[list[object]], tuple[str, ...], dict[str, set[str]], list[str]]] = {
    "eps-outside-sqrt": (
        [
            [
                "lenscheck.norms",
                "apply_norm",
                "y = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)",
                "y = x32 / (x32.pow(2).mean(dim=-1, keepdim=True).sqrt() + eps)",
                [],
            ]
        ],
        ALL,
        {
            "embedded": {"test_invariants"},
            "synthetic-llama": {"test_trajectory", "test_golden_file", "test_invariants"},
        },
        [
            "embedded: layer 0: re-applied LlamaRMSNorm differs from the module by ",
            "synthetic-llama: layer 0: re-applied LlamaRMSNorm differs from the module by ",
            "trajectory: layer 0 entropy: ",
        ],
    ),
    "wrong-norm-post-block": (
        [
            [
                "lenscheck.norms",
                "get_correct_norm_module",
                'return getattr(blocks[layer_idx + 1], "ln1", None)',
                'return getattr(blocks[layer_idx], "ln1", None)',
                [],
            ]
        ],
        SYNTHETIC_ALIASES,
        {m: {"test_trajectory", "test_golden_file"} for m in PRE_NORM & set(SYNTHETIC_ALIASES)},
        ["trajectory: layer 1 "],
    ),
    "entropy-in-nats": (
        [
            [
                "lenscheck.numerics",
                "entropy_bits",
                "return (nats / LN2).abs()",
                "return nats.abs()",
                ["lenscheck.lens:entropy_bits"],
            ]
        ],
        SYNTHETIC_ALIASES,
        {
            m: {"test_trajectory", "test_final_prediction", "test_golden_file"}
            for m in SYNTHETIC_ALIASES
        },
        ["trajectory: layer 0 entropy: ", "final_prediction: entropy: "],
    ),
    "layer-off-by-one": (
        [
            [
                "lenscheck.lens",
                "_pure_records",
                '"layer": layer,',
                '"layer": layer + 1,',
                [],
            ]
        ],
        SYNTHETIC_ALIASES,
        {
            "synthetic-gpt2": {"test_collapse", "test_trajectory", "test_golden_file"},
            "synthetic-gemma3": {"test_collapse", "test_trajectory", "test_golden_file"},
            "synthetic-opt-postnorm": {"test_collapse", "test_trajectory", "test_golden_file"},
            "synthetic-llama": {"test_trajectory", "test_golden_file"},
            "synthetic-neox": {"test_trajectory", "test_golden_file"},
        },
        [
            "trajectory: layer 0 layer index: golden 0 vs run 1",
            "collapse: L_copy: golden 0 vs run 1",
        ],
    ),
}


@pytest.fixture(scope="module", autouse=True)
def _warm_lens_modules() -> None:
    """Run every synthetic model once here: pytester drops the modules an in-process run
    imported first, and torch/transformers cannot be imported twice in one process."""
    from lenscheck.config import LensConfig
    from lenscheck.runner import run_model

    for alias in SYNTHETIC_ALIASES:
        run_model(alias, LensConfig(device="cpu", dtype="float32", heatmap=False))


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An inner project holding a copy of the committed goldens."""
    monkeypatch.setenv(CACHE_ENV_VAR, str(MODEL_CACHE))
    # Under `pytest -n N` this runs in an xdist worker; the inner run is not one (syrupy reads
    # PYTEST_XDIST_WORKER and would drop its summary).
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeini("[pytest]\n")
    shutil.copytree(REPO / "golden", pytester.path / "golden")
    yield pytester.path
    assert not list(pytester.path.glob(".cache/lenscheck/*")), "an inner run rebuilt a model"


def run_with(pytester: pytest.Pytester, patches: list[list[object]], models: tuple[str, ...]):  # type: ignore[no-untyped-def]
    import lenscheck.lens
    import lenscheck.norms
    import lenscheck.numerics

    before = {
        "apply_norm": lenscheck.norms.apply_norm,
        "get_correct_norm_module": lenscheck.norms.get_correct_norm_module,
        "entropy_bits": lenscheck.numerics.entropy_bits,
        "lens.entropy_bits": lenscheck.lens.entropy_bits,
        "_pure_records": lenscheck.lens._pure_records,
    }
    pytester.makeconftest(CONFTEST.format(patches=json.dumps(patches)))
    result = pytester.runpytest(*BASE_ARGS, f"--lens-models={','.join(models)}", "-m", "lens")
    # The fault lived only for the inner run.
    assert lenscheck.norms.apply_norm is before["apply_norm"]
    assert lenscheck.norms.get_correct_norm_module is before["get_correct_norm_module"]
    assert lenscheck.numerics.entropy_bits is before["entropy_bits"]
    assert lenscheck.lens.entropy_bits is before["lens.entropy_bits"]
    assert lenscheck.lens._pure_records is before["_pure_records"]
    return result


def failed_by_model(result: pytest.RunResult) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        match = re.search(r"::(test_\w+)\[(.+)\]$", report.nodeid)
        if match and report.failed:
            out.setdefault(match[2], set()).add(match[1])
    return out


@pytest.mark.parametrize(
    "models",
    [
        pytest.param(SYNTHETIC_ALIASES, id="synthetic"),
        pytest.param(ALL, id="embedded,synthetic", marks=pytest.mark.slow),
    ],
)
def test_control_no_fault_passes(
    project: Path, pytester: pytest.Pytester, models: tuple[str, ...]
) -> None:
    """The same conftest machinery with no fault: everything passes on the same models."""
    result = run_with(pytester, [], models)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=6 * len(models))
    assert f"{len(models)} snapshots passed." in result.stdout.str()
    assert "drift" not in result.stdout.str()


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(f, marks=[pytest.mark.slow] if "embedded" in FAULTS[f][1] else [])
        for f in FAULTS
    ],
)
def test_fault_fails_the_golden_suite(project: Path, pytester: pytest.Pytester, fault: str) -> None:
    patches, models, caught, texts = FAULTS[fault]
    result = run_with(pytester, patches, models)
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    assert failed_by_model(result) == caught
    for text in texts:
        assert text in out, f"{text!r} not in the output of the {fault} run"
    # Every drift report offers the re-bless command (the fix when the change is intended).
    for model, tests in caught.items():
        if tests - {"test_invariants"}:
            assert f"pytest --lens-models={model} --snapshot-update" in out


def test_a_missing_fault_line_is_an_error_not_a_pass(
    project: Path, pytester: pytest.Pytester
) -> None:
    """The injection itself cannot silently do nothing."""
    patch = [["lenscheck.numerics", "entropy_bits", "return nats_in_bits", "return 0", []]]
    result = run_with(pytester, patch, ("synthetic-llama",))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: fault line not found once in lenscheck.numerics.entropy_bits: 'return nats_in*'"]
    )
