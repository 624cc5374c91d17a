"""lenscheck.runner: out-dir check, dtype/unembed policy at load, residual keeping, writing."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _lens_fixtures import make_fake_backend

#: One torch thread for this module (see _lens_fixtures.single_thread).
pytestmark = pytest.mark.usefixtures("torch_single_thread")

LLAMA = "synthetic-llama"


def _cfg(**changes: Any) -> Any:
    from lenscheck.config import LensConfig
    from lenscheck.prompts import TEST_PROMPTS

    base: dict[str, Any] = {"device": "cpu", "heatmap": False, "test_prompts": TEST_PROMPTS[:1]}
    return LensConfig(**{**base, **changes})


def test_check_out_dir_creates_folders_and_leaves_no_probe(tmp_path: Path) -> None:
    from lenscheck.runner import check_out_dir

    target = tmp_path / "a" / "b" / "c"
    assert check_out_dir(target) == target
    assert target.is_dir() and list(target.iterdir()) == []
    assert check_out_dir(target) == target  # idempotent


def test_check_out_dir_refuses_a_path_under_a_file(tmp_path: Path) -> None:
    from lenscheck.runner import check_out_dir

    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        check_out_dir(tmp_path / "f" / "sub" / "deeper")
    assert str(info.value) == (
        f"output directory {str(tmp_path / 'f' / 'sub' / 'deeper')!r} is not writable: "
        f"{str(tmp_path / 'f')!r} is a file, not a directory; pass a folder with --out-dir"
    )
    assert (tmp_path / "f").read_text() == "x"


def test_check_out_dir_refuses_a_file_naming_the_file_not_errno(tmp_path: Path) -> None:
    """Not mkdir's "is not writable (File exists)": the path is a file, a folder was expected."""
    from lenscheck.runner import check_out_dir

    (tmp_path / "out.csv").write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        check_out_dir(tmp_path / "out.csv")
    assert str(info.value) == (
        f"output directory {str(tmp_path / 'out.csv')!r} exists and is a file, not a "
        "directory; expected a directory (or a path where one can be created): pass a folder "
        "with --out-dir"
    )
    assert "File exists" not in str(info.value) and "not writable" not in str(info.value)
    assert (tmp_path / "out.csv").read_text() == "x"  # left alone


def _rng_draws() -> tuple[Any, ...]:
    import random

    import numpy as np
    import torch

    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def _rng_states() -> tuple[Any, ...]:
    import random

    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return random.getstate(), (kind, keys.tolist(), pos, has_gauss, gauss), torch.get_rng_state()


def _seed_all(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.mark.parametrize(("mode", "warn_only"), [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("raises", [False, True], ids=["returns", "raises"])
def test_seeded_seeds_inside_and_restores_everything_after(
    mode: bool, warn_only: bool, raises: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside: python, numpy and torch seeded, deterministic kernels on (warn-only). After,
    also when the body raises: the caller's RNG states, torch's deterministic mode and the
    environment as they were."""
    import torch

    from lenscheck.runner import seeded

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    prior = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    _seed_all(7)
    seven = _rng_draws()
    try:
        _seed_all(1)
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        before = _rng_states()
        with pytest.raises(RuntimeError) if raises else contextlib.nullcontext(), seeded(7):
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.is_deterministic_algorithms_warn_only_enabled()
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
            assert _rng_draws() == seven  # every generator seeded with 7
            if raises:
                torch.use_deterministic_algorithms(False)  # the body may even change it
                raise RuntimeError("the body failed")
        after = _rng_states()
        assert after[:2] == before[:2] and torch.equal(after[2], before[2])
        assert (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ) == (mode, warn_only)
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    finally:
        torch.use_deterministic_algorithms(prior[0], warn_only=prior[1])


def test_seeded_does_not_import_the_inductor_compiler() -> None:
    """torch.use_deterministic_algorithms imports torch._inductor (~1 s of a warm run) to set
    a flag only compiled graphs read; seeded() sets the kernel switch alone."""
    code = (
        "import sys, torch\n"
        "from lenscheck.runner import seeded\n"
        "with seeded(1):\n"
        "    on = torch.are_deterministic_algorithms_enabled()\n"
        "print(on, torch.are_deterministic_algorithms_enabled(), 'torch._inductor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]


def test_seeded_keeps_inductors_flag_in_step_where_the_caller_loaded_it() -> None:
    code = (
        "import torch, torch._inductor.config as ic\n"
        "from lenscheck.runner import seeded\n"
        "with seeded(1):\n"
        "    inside = ic.deterministic\n"
        "print(inside, ic.deterministic)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_seeded_keeps_a_cublas_workspace_the_caller_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from lenscheck.runner import seeded

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with seeded(1):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_run_model_writes_files_and_times_stages(tmp_path: Path) -> None:
    from lenscheck.runner import run_model

    stages: list[str] = []
    run = run_model(LLAMA, _cfg(), tmp_path, stage=stages.append)
    assert stages == ["load", "lens", "write"]
    (case,) = run.suite.cases
    assert list(run.paths) == list(run.results) == [case.id]
    assert run.result is run.results[case.id]
    paths = run.paths[case.id]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name
        for p in (
            paths.records_csv,
            paths.pure_csv,
            paths.json,
            paths.rawlens_csv,
            paths.milestones_csv,
        )
    )
    data = json.loads(paths.json.read_text(encoding="utf-8"))
    assert data["diagnostics"]["model_source"] == "synthetic"
    assert data["diagnostics"]["model"] == LLAMA
    assert set(run.timings) == {"load_s", "lens_s", "total_s"}
    assert 0 < run.timings["load_s"] < run.timings["total_s"]
    assert run.result.residuals is None  # not kept unless asked


def test_self_test_keeps_residuals_only_for_itself() -> None:
    from lenscheck.runner import run_model

    run = run_model(LLAMA, _cfg(self_test=True))
    assert run.result.residuals is None
    kept = run_model(LLAMA, _cfg(self_test=True, keep_residuals=True))
    assert kept.result.residuals is not None and len(kept.result.residuals) == 4


@pytest.mark.parametrize(
    ("dtype", "fp32_unembed", "compute", "unembed"),
    [
        ("auto", False, "float32", "float32"),  # cpu policy: fp32, unembed promoted
        ("float16", True, "float16", "float32"),  # --fp32-unembed forces the promotion
        ("bfloat16", False, "bfloat16", "bfloat16"),  # no automatic promotion below fp32
    ],
)
def test_load_model_dtype_and_unembed_policy(
    dtype: str, fp32_unembed: bool, compute: str, unembed: str
) -> None:
    import torch

    from lenscheck.runner import load_model

    resolved, backend = load_model(LLAMA, _cfg(dtype=dtype, fp32_unembed=fp32_unembed))
    assert resolved.source == "synthetic"
    assert backend.dtype == getattr(torch, compute)
    assert backend.unembed.dtype == getattr(torch, unembed)
    assert next(backend.model.parameters()).dtype == getattr(torch, compute)


def test_bf16_run_with_fp32_unembed_stays_within_the_bf16_tolerance() -> None:
    from lenscheck.runner import run_model
    from lenscheck.selftest import kl_tolerance_bits

    run = run_model(LLAMA, _cfg(dtype="bfloat16", fp32_unembed=True, self_test=True))
    diag = run.result.diagnostics
    assert diag["compute_dtype"] == "torch.bfloat16" and diag["unembed_dtype"] == "torch.float32"
    import torch

    assert diag["last_layer_consistency"]["kl_bits_max"] < kl_tolerance_bits(torch.bfloat16)


def test_write_outputs_writes_heatmap_and_residuals_when_asked(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from lenscheck.artifacts import output_paths
    from lenscheck.config import LensConfig
    from lenscheck.lens import run_lens
    from lenscheck.runner import write_outputs

    fb = make_fake_backend()
    result = run_lens(fb, LensConfig(keep_residuals=True, test_prompts=("The capital",)))
    paths = output_paths(tmp_path, "org/fake-model")
    write_outputs(result, paths, LensConfig(keep_residuals=True), title="fake-model")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "output-fake-model-lens.png",
        "output-fake-model-milestones.csv",
        "output-fake-model-pure-next-token-rawlens.csv",
        "output-fake-model-pure-next-token.csv",
        "output-fake-model-records.csv",
        "output-fake-model-residuals.safetensors",
        "output-fake-model.json",
    ]
    tensors = load_file(str(paths.residuals))
    assert len(tensors) == 4
    assert all(tensors[f"layer_{i:02d}"].shape == (15, 16) for i in range(4))
    # Without the options: exactly the three data files.
    other = tmp_path / "plain"
    other.mkdir()
    write_outputs(result, output_paths(other, "fake"), LensConfig(heatmap=False), title="x")
    assert sorted(p.name for p in other.iterdir()) == [
        "output-fake-milestones.csv",
        "output-fake-pure-next-token-rawlens.csv",
        "output-fake-pure-next-token.csv",
        "output-fake-records.csv",
        "output-fake.json",
    ]
