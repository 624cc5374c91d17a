"""One model, end to end: resolve, load, lens, self-test, write every file atomically."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lenscheck.artifacts import OutputPaths, dump_json_bytes, output_paths
from lenscheck.config import LensConfig

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import LensBackend
    from lenscheck.lens import LensResult
    from lenscheck.models import ResolvedModel

__all__ = [
    "ModelRun",
    "check_out_dir",
    "load_model",
    "run_model",
    "seed_everything",
    "write_outputs",
]

log = logging.getLogger(__name__)
Stage = Callable[[str], None]


@dataclass
class ModelRun:
    """What one model's run produced, and how long each stage took."""

    spec: str
    resolved: ResolvedModel
    result: LensResult
    backend: LensBackend
    paths: OutputPaths | None = None
    timings: dict[str, float] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed every RNG and ask torch for deterministic kernels (byte-identical CSVs)."""
    import random

    import numpy as np
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Create ``out_dir`` if needed and prove it is writable, before any model loads."""
    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".lenscheck-probe-"):
            pass
    except OSError as exc:
        raise PermissionError(
            f"output directory {str(path)!r} is not writable ({exc.strerror or exc}); "
            "pass a writable folder with --out-dir"
        ) from exc
    return path


def _compute_dtype(cfg: LensConfig, device: str, model_id: str) -> torch.dtype:
    from lenscheck.device import choose_dtype, parse_dtype

    return parse_dtype(cfg.dtype) or choose_dtype(device, model_id)


def load_model(
    spec: str, cfg: LensConfig, *, cache_dir: Path | None = None
) -> tuple[ResolvedModel, LensBackend]:
    """Resolve ``spec`` (alias, local dir or hub id) and load it through ``cfg.backend``."""
    from lenscheck.backends import load_backend
    from lenscheck.device import resolve_device, should_auto_promote_unembed
    from lenscheck.models import resolve_model

    resolved = resolve_model(spec, cache_dir=cache_dir)
    device = resolve_device(cfg.device)
    dtype = _compute_dtype(cfg, device, resolved.requested)
    promote = cfg.fp32_unembed or should_auto_promote_unembed(dtype)
    from lenscheck.models import EMBEDDED_MODEL_ID

    # The embedded alias reports the id its weights come from, as a hub run would.
    model_id = EMBEDDED_MODEL_ID if resolved.source == "embedded" else resolved.requested
    backend = load_backend(
        cfg.backend,
        resolved.path,
        model_id=model_id,
        device=device,
        dtype=dtype,
        promote_unembed=promote,
        trust_remote_code=cfg.trust_remote_code,
        device_map=cfg.device_map,
    )
    return resolved, backend


def run_model(
    spec: str,
    cfg: LensConfig,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    stage: Stage | None = None,
    cache_dir: Path | None = None,
) -> ModelRun:
    """Run the lens on one model; write its files into ``out_dir`` when given."""
    from lenscheck.lens import run_lens

    note = stage or (lambda _s: None)
    if out_dir is not None:
        check_out_dir(out_dir)
    seed_everything(cfg.seed)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    note("load")
    resolved, backend = load_model(spec, cfg, cache_dir=cache_dir)
    timings["load_s"] = time.perf_counter() - t0
    note("lens")
    lens_cfg = cfg.evolve(
        keep_residuals=cfg.keep_residuals or cfg.self_test, model_source=resolved.source
    )
    result = run_lens(backend, lens_cfg)
    timings["lens_s"] = time.perf_counter() - t0 - timings["load_s"]
    if cfg.self_test:
        from lenscheck.selftest import run_self_test

        note("self-test")
        run_self_test(backend, result, result.residuals or [])
        if not cfg.keep_residuals:
            result.residuals = None
    run = ModelRun(spec=spec, resolved=resolved, result=result, backend=backend, timings=timings)
    if out_dir is not None:
        note("write")
        run.paths = output_paths(out_dir, resolved.name)
        write_outputs(result, run.paths, cfg, title=resolved.name)
    timings["total_s"] = time.perf_counter() - t0
    return run


def _file_bytes(
    result: LensResult, paths: OutputPaths, cfg: LensConfig, title: str
) -> dict[Path, bytes]:
    from lenscheck.schema import dump_csv_bytes, pure_row, record_row

    files = {
        paths.records_csv: dump_csv_bytes(
            "records", (record_row(r) for r in result.records), cfg.top_k_verbose
        ),
        paths.pure_csv: dump_csv_bytes(
            "pure", (pure_row(r) for r in result.pure_records), cfg.top_k_verbose
        ),
        paths.json: dump_json_bytes(result.json_data),
    }
    if cfg.heatmap:
        from lenscheck.plot import render_heatmap_png

        files[paths.heatmap] = render_heatmap_png(result, title)
    if cfg.keep_residuals and result.residuals is not None:
        files[paths.residuals] = _residual_bytes(result.residuals)
    return files


def _residual_bytes(residuals: list[Any]) -> bytes:
    from safetensors.torch import save

    tensors = {f"layer_{i:02d}": r.detach().cpu().contiguous() for i, r in enumerate(residuals)}
    return save(tensors, metadata={"format": "lenscheck-residuals", "layers": str(len(residuals))})


def write_outputs(result: LensResult, paths: OutputPaths, cfg: LensConfig, *, title: str) -> None:
    """Write every output file of one model as a set: all of them or none."""
    from lenscheck.artifacts import write_files_atomically

    write_files_atomically(_file_bytes(result, paths, cfg, title))
