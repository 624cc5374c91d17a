"""One model, end to end: resolve, load, lens, self-test, write every file atomically."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import safetensors.torch
import torch

# lens and selftest as modules: run_lenses and run_self_test are looked up when called (tests
# replace them).
from lenscheck import lens, selftest
from lenscheck.artifacts import OutputPaths, dump_json_bytes, output_paths, write_files_atomically
from lenscheck.backends import load_backend
from lenscheck.config import LensConfig
from lenscheck.device import choose_dtype, parse_dtype, resolve_device, should_auto_promote_unembed
from lenscheck.lenses import OpenedLens, bind_lenses, open_lenses
from lenscheck.models import (
    EMBEDDED_MODEL_ID,
    EMBEDDED_MODEL_IDS,
    ResolvedModel,
    resolve_model,
)
from lenscheck.numerics import topk_probs
from lenscheck.schema import dump_csv_bytes, pure_row, record_row
from lenscheck.vocab import BOS_ALWAYS, BOS_AUTO, SCHEMA_ORIGINAL, BosPolicy

if TYPE_CHECKING:
    from lenscheck.backends.base import LensBackend
    from lenscheck.lens import LensResult
    from lenscheck.suites import PromptCase, PromptSuite

__all__ = [
    "ModelRun",
    "check_out_dir",
    "load_model",
    "output_bytes",
    "run_model",
    "seeded",
    "write_outputs",
]

log = logging.getLogger(__name__)
Stage = Callable[[str], None]


@dataclass
class ModelRun:
    """What one model's run produced (one result per prompt and lens), and how long each
    stage took. ``results`` and ``paths`` are the first lens' (the logit lens unless the
    configuration's ``lenses`` say otherwise); ``lens_results`` and ``lens_paths`` hold
    every lens', by lens name and then prompt id."""

    spec: str
    resolved: ResolvedModel
    results: dict[str, LensResult]
    backend: LensBackend
    suite: PromptSuite
    name: str = ""
    paths: dict[str, OutputPaths] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    lens_results: dict[str, dict[str, LensResult]] = field(default_factory=dict)
    lens_paths: dict[str, dict[str, OutputPaths]] = field(default_factory=dict)

    @property
    def result(self) -> LensResult:
        """The first prompt's result (the only one for a single-prompt run)."""
        return self.results[self.suite.cases[0].id]


_DETERMINISM_ENV = ("CUBLAS_WORKSPACE_CONFIG", ":16:8")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed every RNG and ask torch for deterministic kernels (byte-identical CSVs) inside
    the block; the caller's RNG states, torch's deterministic mode and the environment are
    restored afterwards, so a test session or a library caller is left as it was."""
    saved = (
        random.getstate(),
        np.random.get_state(),
        torch.random.get_rng_state(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        os.environ.get(_DETERMINISM_ENV[0]),
    )
    os.environ.setdefault(*_DETERMINISM_ENV)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    _deterministic_kernels(True, warn_only=True)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.random.set_rng_state(saved[2])
        _deterministic_kernels(saved[3], warn_only=saved[4])
        if saved[5] is None:
            os.environ.pop(_DETERMINISM_ENV[0], None)


def _deterministic_kernels(mode: bool, *, warn_only: bool) -> None:
    """torch's deterministic-kernel switch, without importing torch._inductor.

    ``torch.use_deterministic_algorithms`` also imports the inductor compiler to set its
    config flag: ~1 s of a 4 s warm run, for compiled graphs lenscheck never builds. Where the
    process has loaded inductor already (the caller compiles), keep its flag in step too.
    """
    switch = getattr(torch._C, "_set_deterministic_algorithms", None)
    if switch is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        switch(mode, warn_only=warn_only)


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Create ``out_dir`` if needed and prove it is writable, before any model loads."""
    path = Path(out_dir)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    # mkdir's own errors name neither the file in the way nor what was expected: "File
    # exists" for the path itself, "Not a directory" for a path under a file.
    if blocker == path:
        raise NotADirectoryError(
            f"output directory {str(path)!r} exists and is a file, not a directory; expected "
            "a directory (or a path where one can be created): pass a folder with --out-dir"
        )
    if blocker is not None:
        raise NotADirectoryError(
            f"output directory {str(path)!r} is not writable: {str(blocker)!r} is a file, not "
            "a directory; pass a folder with --out-dir"
        )
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
    return parse_dtype(cfg.dtype) or choose_dtype(device, model_id)


def load_model(
    spec: str, cfg: LensConfig, *, cache_dir: Path | None = None
) -> tuple[ResolvedModel, LensBackend]:
    """Resolve ``spec`` (alias, local dir or hub id) and load it through ``cfg.backend``."""
    resolved = resolve_model(spec, cache_dir=cache_dir)
    device = resolve_device(cfg.device)
    dtype = _compute_dtype(cfg, device, resolved.requested)
    promote = cfg.fp32_unembed or should_auto_promote_unembed(dtype)
    # Embedded aliases report the id their weights come from, as a hub run would.
    model_id = resolved.requested
    if resolved.source == "embedded":
        model_id = EMBEDDED_MODEL_IDS.get(resolved.requested, EMBEDDED_MODEL_ID)
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
    backend.tokenize_with(cfg.bos, cfg.chat_template)
    return resolved, backend


def run_model(
    spec: str,
    cfg: LensConfig,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    stage: Stage | None = None,
    cache_dir: Path | None = None,
    name: str | None = None,
) -> ModelRun:
    """Run the lens on every prompt of ``cfg.prompt_suite()`` with one model; write each
    prompt's files into ``out_dir`` when given (``name``: the file stem, default the model's)."""
    if out_dir is not None:
        check_out_dir(out_dir)
    with seeded(cfg.seed):
        return _run_model(spec, cfg, out_dir, stage or (lambda _s: None), cache_dir, name)


def _run_model(
    spec: str,
    cfg: LensConfig,
    out_dir: str | os.PathLike[str] | None,
    note: Stage,
    cache_dir: Path | None,
    name: str | None,
) -> ModelRun:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # Every lens' files are read and checked before the model loads: a missing or corrupt
    # checkpoint costs no load.
    opened = open_lenses(cfg.lenses)
    note("load")
    resolved, backend = load_model(spec, cfg, cache_dir=cache_dir)
    timings["load_s"] = time.perf_counter() - t0
    suite = cfg.prompt_suite()
    run_name = name or resolved.name
    if out_dir is not None:
        _check_distinct_files(_lens_paths(out_dir, run_name, suite, opened), cfg)
    note("lens")
    lens_cfg = cfg.evolve(
        keep_residuals=cfg.keep_residuals or cfg.self_test, model_source=resolved.source
    )
    by_lens = lens.run_lenses(backend, suite, lens_cfg, bind_lenses(opened, backend, lens_cfg))
    if cfg.schema != SCHEMA_ORIGINAL:
        for results in by_lens.values():
            _record_other_bos(backend, cfg, results)
    timings["lens_s"] = time.perf_counter() - t0 - timings["load_s"]
    if cfg.self_test:
        note("self-test")
        for results in by_lens.values():
            _self_test(backend, results, keep=cfg.keep_residuals)
    else:
        for results in by_lens.values():
            for result in results.values():
                result.diagnostics["self_test"] = {"ran": False}
    run = ModelRun(
        spec=spec,
        resolved=resolved,
        results=next(iter(by_lens.values())),
        backend=backend,
        suite=suite,
        name=run_name,
        timings=timings,
        lens_results=by_lens,
    )
    if out_dir is not None:
        note("write")
        _write_run(run, cfg, _lens_paths(out_dir, run.name, suite, opened))
    timings["total_s"] = time.perf_counter() - t0
    return run


def _record_other_bos(
    backend: LensBackend, cfg: LensConfig, results: dict[str, LensResult]
) -> None:
    """Where the ``auto`` and ``always`` BOS policies give a prompt different ids, the model's
    own answer the other way (one more forward pass): whether the choice matters."""
    other: BosPolicy = BOS_AUTO if cfg.bos == BOS_ALWAYS else BOS_ALWAYS
    for result in results.values():
        prompt = result.json_data["prompt"]["context_prompt"]
        if backend.codec.encode(prompt, BOS_AUTO) == backend.codec.encode(prompt, BOS_ALWAYS):
            continue
        ids = backend.codec.encode(prompt, other)
        with torch.no_grad():
            logits = backend.run(ids).logits[-1].float()
        top = topk_probs(logits, 2)
        first, second = top.probs.tolist()
        result.diagnostics["tokenization"]["other_bos"] = {
            "policy": other,
            "input_ids": ids,
            "final_top1": backend.decode(int(top.ids[0])),
            "final_p_top1": first,
            "final_p_top2": second,
        }


def _lens_paths(
    out_dir: str | os.PathLike[str], name: str, suite: PromptSuite, opened: list[OpenedLens]
) -> dict[str, dict[str, OutputPaths]]:
    """Per lens and prompt, its files: ``name`` + the prompt's suffix + the lens' suffix."""
    return {
        o.spec.name: {
            case.id: output_paths(out_dir, name + suite.file_suffix(case), o.spec.suffix)
            for case in suite.cases
        }
        for o in opened
    }


def _check_distinct_files(by_lens: dict[str, dict[str, OutputPaths]], cfg: LensConfig) -> None:
    """Refuse a run two of whose files would share a name (a prompt id ending in a lens'
    suffix: ids ``a`` and ``a-tuned`` under the tuned lens), before anything is written."""
    owner: dict[Path, str] = {}
    for n, (lens_name, paths) in enumerate(by_lens.items()):
        for case_id, p in paths.items():
            files = [p.records_csv, p.pure_csv, p.json] + ([p.heatmap] if cfg.heatmap else [])
            if n == 0 and cfg.keep_residuals:
                files.append(p.residuals)
            for path in files:
                who = f"prompt {case_id!r} under the {lens_name} lens"
                if path in owner:
                    raise ValueError(
                        f"{path.name} would be written for {owner[path]} and for {who}; "
                        "rename one of the prompt ids in the suite"
                    )
                owner[path] = who


def _write_run(run: ModelRun, cfg: LensConfig, by_lens: dict[str, dict[str, OutputPaths]]) -> None:
    """Each lens' files of each prompt, one atomic set each; the residuals with the first."""
    for n, (lens_name, paths) in enumerate(by_lens.items()):
        for case in run.suite.cases:
            write_outputs(
                run.lens_results[lens_name][case.id],
                paths[case.id],
                cfg,
                title=_title(run, case, lens_name),
                with_residuals=n == 0,
                token_bytes=getattr(run.backend, "token_bytes", None),
            )
        run.lens_paths[lens_name] = dict(paths)
    run.paths = dict(next(iter(run.lens_paths.values())))


def _title(run: ModelRun, case: PromptCase, lens_name: str) -> str:
    """The heatmap's title: the file stem, and the lens when it is not the logit lens."""
    stem = f"{run.name}{run.suite.file_suffix(case)}"
    return stem if lens_name == "logit" else f"{stem} ({lens_name} lens)"


def _self_test(backend: LensBackend, results: dict[str, LensResult], *, keep: bool) -> None:
    """Check every prompt before anything is written; record the numbers in its JSON."""
    for case_id, result in results.items():
        report = selftest.run_self_test(backend, result, result.residuals or [])
        result.diagnostics["self_test"] = {"ran": True, "passed": True, **report}
        log.info("self-test passed for %s (%s): %s", backend.model_id, case_id, report)
        if not keep:
            result.residuals = None


def output_bytes(result: LensResult, cfg: LensConfig) -> tuple[bytes, bytes, bytes]:
    """The JSON, records CSV and pure next-token CSV of one prompt, as written to disk."""
    return (
        dump_json_bytes(result.json_data),
        dump_csv_bytes("records", (record_row(r) for r in result.records), cfg.top_k_verbose),
        dump_csv_bytes("pure", (pure_row(r) for r in result.pure_records), cfg.top_k_verbose),
    )


def _file_bytes(
    result: LensResult,
    paths: OutputPaths,
    cfg: LensConfig,
    title: str,
    with_residuals: bool,
    token_bytes: Callable[[int], bytes | None] | None = None,
) -> dict[Path, bytes]:
    json_bytes, records, pure = output_bytes(result, cfg)
    files = {paths.records_csv: records, paths.pure_csv: pure, paths.json: json_bytes}
    if cfg.heatmap:
        # Imported here: matplotlib and Pillow only for a heatmap (the plugin draws none).
        from lenscheck.plot import render_heatmap_png

        files[paths.heatmap] = render_heatmap_png(result, title, token_bytes=token_bytes)
    if with_residuals and cfg.keep_residuals and result.residuals is not None:
        files[paths.residuals] = _residual_bytes(result.residuals)
    return files


def _residual_bytes(residuals: list[Any]) -> bytes:
    tensors = {f"layer_{i:02d}": r.detach().cpu().contiguous() for i, r in enumerate(residuals)}
    return safetensors.torch.save(
        tensors, metadata={"format": "lenscheck-residuals", "layers": str(len(residuals))}
    )


def write_outputs(
    result: LensResult,
    paths: OutputPaths,
    cfg: LensConfig,
    *,
    title: str,
    with_residuals: bool = True,
    token_bytes: Callable[[int], bytes | None] | None = None,
) -> None:
    """Write every output file of one model, prompt and lens as a set: all of them or none
    (``with_residuals``: the residuals too, with ``--keep-residuals``; once per prompt;
    ``token_bytes``: the backend's, so that the heatmap shows byte tokens as bytes)."""
    write_files_atomically(_file_bytes(result, paths, cfg, title, with_residuals, token_bytes))
