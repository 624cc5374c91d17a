"""Per-session state: one lens run per model (per xdist worker), shared by its tests, and
released after the model's last test so that one model is in memory at a time."""

from __future__ import annotations

import gc
import json
import logging
import os
import weakref
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lenscheck.artifacts import atomic_write_bytes
from lenscheck.device import cpu_kernels, resolve_device
from lenscheck.golden.compare import SECTIONS, DriftReport, compare_golden
from lenscheck.golden.payload import PromptFiles, golden_payload, model_dir_name
from lenscheck.golden.report import identity_problems, rebless_command, render_report
from lenscheck.golden.store import (
    GoldenFormatError,
    dumps_golden,
    find_golden,
    golden_dir,
    golden_stem,
    goldens_of_class,
    read_golden,
)
from lenscheck.golden.tolerances import own_class_note, tolerances_between, tolerances_for
from lenscheck.norms import UnsupportedNormError
from lenscheck.plugin.gpus import assign_cuda_device
from lenscheck.plugin.settings import LensSettings
from lenscheck.progress import quiet_library_progress
from lenscheck.vocab import HALF_DTYPES, OBTAINED_SUFFIX

# The plugin imports this module only once a lens option was given. Still imported inside
# functions: torch, lenscheck.runner (torch, and the model code) and lenscheck.golden.extension
# (syrupy), which a session pays for only when a model runs.
if TYPE_CHECKING:
    from lenscheck.backends.base import Capture
    from lenscheck.lens import LensResult
    from lenscheck.runner import ModelRun

__all__ = ["LENSCHECK_NOTE", "GoldenHelper", "LensRun", "LensSession"]

log = logging.getLogger(__name__)

#: user_properties key of notes printed at the end of the session (they travel with the
#: test reports, so xdist workers' notes appear too): cross-class comparisons, prompts the
#: golden has and the run does not, peak device memory per model.
LENSCHECK_NOTE = "lenscheck_note"
#: Errors whose message is the whole story (what was expected, what was found, the fix):
#: a model run failing with one fails its tests with that line alone. A bug elsewhere
#: (TypeError, AttributeError...) keeps its traceback.
RUN_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    LookupError,
    OSError,
    ImportError,
    ArithmeticError,
    UnsupportedNormError,
)
#: Drifts a failing test lists one per line without --lens-details.
_DRIFT_LINES = 12


@dataclass
class LensRun:
    """A model's lens run as tests see it: one result per prompt of the suite."""

    model: str
    spec: str
    device: str
    run: ModelRun
    files: dict[str, PromptFiles]
    payload: dict[str, Any]
    #: Per lens (``logit``, ``tuned``...), its files and golden document; ``files`` and
    #: ``payload`` are the first lens's.
    lens_files: dict[str, dict[str, PromptFiles]] = field(default_factory=dict)
    lens_payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    def for_lens(self, lens: str | None) -> LensRun:
        """This run as one lens's files and golden (``None``: the first lens)."""
        if lens is None or not self.lens_payloads or lens == next(iter(self.lens_payloads)):
            return self
        return replace(
            self, files=self.lens_files[lens], payload=self.lens_payloads[lens], cache=self.cache
        )

    @property
    def results(self) -> dict[str, LensResult]:
        """Each prompt's result, by prompt id, in suite order."""
        return self.run.results

    def result(self, prompt: str | None = None) -> LensResult:
        """One prompt's result (default: the suite's first prompt)."""
        return self.run.results[prompt] if prompt else self.run.result

    @property
    def diagnostics(self) -> dict[str, Any]:
        """The first prompt's JSON ``diagnostics`` (L_copy, L_semantic, ...)."""
        return self.run.result.diagnostics

    @property
    def json(self) -> dict[str, Any]:
        """The first prompt's whole JSON document, as the CLI writes it."""
        return self.run.result.json_data

    @property
    def records(self) -> list[dict[str, Any]]:
        """The first prompt's records CSV rows as dicts (layer, pos, token, entropy, topk)."""
        return self.run.result.records

    @property
    def pure_records(self) -> list[dict[str, Any]]:
        """The first prompt's pure next-token rows with the collapse flags."""
        return self.run.result.pure_records

    @property
    def golden_class(self) -> str:
        """``cpu-float32`` and friends."""
        return str(self.payload["class"])

    def capture(self, prompt: str | None = None) -> Capture:
        """A fresh forward pass of one prompt: every layer's residual and the model's logits."""
        backend = self.run.backend
        return backend.run(self.result(prompt).input_ids)

    def capture_as_run(self, prompt: str | None = None) -> Capture:
        """One prompt's forward pass as the run made it: batched with its probes, padded as
        a lone run pads them. In half precision a pass of another shape rounds apart."""
        backend = self.run.backend
        result = self.result(prompt)
        if result.case is None:  # a result built by hand: no probes known
            return self.capture(prompt)
        probes = [backend.encode(p) for p in result.case.probes]
        return backend.run_batch([result.input_ids, *probes])[0]

    def residuals(self, prompt: str | None = None) -> list[Any]:
        """Every layer's residual [T, d] of one prompt (captured on demand)."""
        return self.capture(prompt).residuals


@dataclass
class LensSession:
    """Runs by model; lives in ``config.stash``.

    ``used``: the golden files the session's golden tests read or wrote, by model;
    ``partial``: some generated test was deselected (-k, -m, --lf...), so the session says
    nothing about goldens it did not reach.
    """

    settings: LensSettings
    runs: dict[str, LensRun] = field(default_factory=dict)
    used: dict[str, Path] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    partial: bool = False
    #: Lines for the end-of-session "lenscheck" summary that no test carries.
    notes: list[str] = field(default_factory=list)
    _released: list[tuple[str, Any]] = field(default_factory=list)

    def settle_unused(self, *, updating: bool) -> None:
        """Report the goldens no test used; under --snapshot-update delete them."""
        unused = self.unused_goldens()
        if not unused:
            return
        root = self.settings.golden_dir
        names = ", ".join(str(p.relative_to(root)) for p in unused)
        why = "their model is not in lens_models"
        if not updating:
            self.notes.append(
                f"{len(unused)} golden(s) no test used ({why}): {names}; "
                "--snapshot-update deletes them"
            )
            return
        for path in unused:
            path.unlink()
            for parent in path.parents:  # the model's folders, once empty
                if parent == root or any(parent.iterdir()):
                    break
                parent.rmdir()
        self.notes.append(f"deleted {len(unused)} golden(s) no test used ({why}): {names}")

    def unused_goldens(self) -> list[Path]:
        """Golden files no test of a whole-selection session used: those of model folders
        under the golden directory whose model is no longer configured (as syrupy reports
        snapshots no test uses). Empty unless the session ran the project's whole lens
        selection: the models of its ini file, every generated test."""
        s = self.settings
        if self.partial or s.asked_on_command_line or set(self.used) != set(s.models):
            return []
        if not s.golden_dir.is_dir():
            return []
        ours = {model_dir_name(m) for m in s.models}
        return sorted(
            path
            for folder in s.golden_dir.iterdir()
            if folder.is_dir() and folder.name not in ours
            for path in folder.rglob("*.json")
            if not path.name.endswith(OBTAINED_SUFFIX)
        )

    def get(self, model: str) -> LensRun:
        """Run ``model`` once; later calls return the same run until :meth:`release`.

        A run that fails for a reason its message explains (a model that cannot load, a
        prompt too long, a tokenizer without a chat template...) fails each of the model's
        tests with that one line, not a traceback, and is not retried.
        """
        __tracebackhide__ = True
        if model in self.failed:
            pytest.fail(self.failed[model], pytrace=False)
        if model not in self.runs:
            self.settle()
            try:
                self.runs[model] = self._run(model)
            except RUN_ERRORS as exc:
                self.failed[model] = f"lenscheck: {model}: {exc}"
                pytest.fail(self.failed[model], pytrace=False)
        return self.runs[model]

    def release(self, model: str) -> str | None:
        """Drop ``model``'s run and weights; on CUDA, return a peak-memory note.

        pytest still holds the fixture's value while its teardown runs; the weights go when
        pytest lets go of it, and :meth:`settle` makes sure before the next model loads.
        """
        run = self.runs.pop(model, None)
        if run is None:
            return None
        self._released.append((run.device, weakref.ref(run.run.backend)))
        if not run.device.startswith("cuda"):
            return None
        import torch

        peak = torch.cuda.max_memory_allocated(run.device) / 2**30
        return f"{model}: peak device memory {peak:.2f} GiB on {run.device}"

    def settle(self) -> None:
        """Free released models before another loads: one model in memory at a time."""
        released, self._released = self._released, []
        if any(weights() is not None for _, weights in released):
            # Only a reference cycle (a hook, a closure) keeps them now. The full collection
            # costs ~0.2 s with torch loaded, so it runs only then, not after every model.
            gc.collect()
        for device in {d for d, _ in released if d.startswith("cuda")}:
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)

    def _run(self, model: str) -> LensRun:
        from lenscheck.runner import output_bytes, run_model, sidecar_bytes

        s = self.settings
        device = _worker_device(resolve_device(s.device, "--lens-device"))
        cfg = s.config.evolve(device=device)
        # transformers' own progress bars ("Loading weights") would interleave with pytest's
        # output; they come back after the run.
        with quiet_library_progress():
            run = run_model(s.spec(model), cfg)
        # The golden is built from the bytes the CLI would write: the writers are pinned too.
        files: dict[str, dict[str, PromptFiles]] = {}
        payloads: dict[str, dict[str, Any]] = {}
        for lens, results in run.lens_results.items():
            files[lens] = {
                case.id: PromptFiles.from_bytes(
                    *output_bytes(results[case.id], cfg),
                    source=f"{model}:{lens}:{case.id}",
                    sidecars=sidecar_bytes(results[case.id]) or (None, None),
                )
                for case in s.suite.cases
            }
            settings = {k: v for k, v in cfg.settings().items() if k != "preset"}
            payloads[lens] = golden_payload(
                files[lens],
                model=model,
                suite=s.suite.name,
                settings={**settings, "lens": lens},
                cpu_kernels=cpu_kernels() if run.backend.device == "cpu" else None,
            )
        first = next(iter(files))
        return LensRun(
            model,
            s.spec(model),
            run.backend.device,
            run,
            files[first],
            payloads[first],
            lens_files=files,
            lens_payloads=payloads,
        )


def _cross_dtype_note(golden_class: str, run_class: str, rebless: str) -> str:
    """Why a half-precision run may fail a float32 golden, and how to pin that class."""
    golden_dtype, run_dtype = golden_class.split("-", 1)[-1], run_class.split("-", 1)[-1]
    if golden_dtype == run_dtype or run_dtype not in HALF_DTYPES:
        return ""
    return (
        f"\n  note: a {run_dtype} run against a {golden_dtype} golden. The model's own "
        f"{run_dtype} forward pass may differ from its {golden_dtype} one by more than the "
        "calibrated cross-dtype tolerances on some models (docs/tolerances.md says which were "
        f"measured); to pin this class, bless a golden of it: {rebless}"
    )


def _describe(settings: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items())


def _worker_device(device: str) -> str:
    """Under xdist on CUDA, worker gwN takes GPU N modulo the visible count."""
    if device != "cuda":
        return device
    import torch

    return assign_cuda_device(os.environ.get("PYTEST_XDIST_WORKER"), torch.cuda.device_count())


@dataclass
class _GoldenState:
    """What a model's run found about its golden, computed once per run."""

    path: Path | None
    problem: str | None = None
    report: DriftReport | None = None
    obtained: Path | None = None


class GoldenHelper:
    """Compare a run with its golden: what the generated tests and users' tests call."""

    def __init__(
        self,
        lens_run: LensRun,
        settings: LensSettings,
        config: pytest.Config,
        node: pytest.Item | None = None,
        session: LensSession | None = None,
    ) -> None:
        self.lens_run = lens_run
        self.settings = settings
        self.node = node
        self.session = session  # where the golden tests record which goldens they used
        self.updating = bool(getattr(config.option, "update_snapshots", False))
        self.folder = golden_dir(
            settings.golden_dir, model_dir_name(lens_run.model), settings.suite.name
        )
        self.stem = golden_stem(lens_run.golden_class, lens_run.payload["settings"])
        self.path = self.folder / f"{self.stem}.json"
        self.obtained_path = self.folder / f"{self.stem}{OBTAINED_SUFFIX}"

    # ------------------------------------------------------------------ commands
    def rebless(self) -> str:
        """The command that re-blesses this model's golden, with every class option."""
        run = self.lens_run
        models = run.model if run.model == run.spec else f"{run.model}={run.spec}"
        return rebless_command(models, self.settings.rebless_flags())

    def _diff_command(self, golden: Path, obtained: Path) -> str:
        return f"lenscheck diff {golden} {obtained}"

    # ------------------------------------------------------------------- state
    def golden_path(self) -> Path | None:
        """The golden this run compares with (its own class first, else another class)."""
        run = self.lens_run
        return find_golden(self.folder, run.golden_class, run.payload["settings"])

    def _other_settings(self) -> str:
        """The goldens of this class blessed under other settings, and how they differ."""
        mine = self.lens_run.payload["settings"]
        lines = []
        for path in goldens_of_class(self.folder, self.lens_run.golden_class):
            try:
                theirs = read_golden(path).get("settings") or {}
            except (GoldenFormatError, OSError):
                continue
            differ = [
                f"{k} {theirs.get(k)!r} (this run: {v!r})"
                for k, v in mine.items()
                if theirs.get(k) != v
            ]
            lines.append(f"{path.name} was blessed with {', '.join(differ)}")
        if not lines:
            return ""
        return (
            "; ".join(lines) + " (give those settings to compare with it, e.g. --lens-preset, "
            "--lens-decode-norm, --lens-bos); or "
        )

    def _state(self) -> _GoldenState:
        key = f"golden:{self.folder}/{self.stem}"
        if key not in self.lens_run.cache:
            self.lens_run.cache[key] = self._compute_state()
        state: _GoldenState = self.lens_run.cache[key]
        return state

    def _compute_state(self) -> _GoldenState:
        if self.updating:
            # --snapshot-update blesses this run's document as the golden: a user's own test
            # comparing with the golden compares with what is being written, whichever test
            # runs first (it used to fail, asking for the very command being run).
            payload = self.lens_run.payload
            tol, _ = tolerances_for(payload["class"], payload["class"], {})
            note = "this run's own document (--snapshot-update is blessing it)"
            return _GoldenState(
                self.path, report=compare_golden(payload, payload, tol, tolerance_note=note)
            )
        path = self.golden_path()
        if path is None:
            problem = (
                f"no golden for {self.lens_run.model} ({self.lens_run.golden_class}, suite "
                f"{self.settings.suite.name}, {_describe(self.lens_run.payload['settings'])}) "
                f"in {self.folder}; {self._other_settings()}create it with: {self.rebless()}"
            )
            self._log_line({"ok": False, "problem": problem})
            return _GoldenState(None, problem)
        try:
            golden = read_golden(path, fix=f"re-bless it with: {self.rebless()}")
        except GoldenFormatError as exc:
            self._log_line({"golden": str(path), "ok": False, "problem": str(exc)})
            return _GoldenState(path, str(exc))
        report = self._compare(golden, path)
        state = _GoldenState(path, report=report)
        self._log_report(report, path)
        if not report.ok:
            state.obtained = self._write_obtained()
        elif self.obtained_path.exists():
            # A run without drift: an obtained file of an earlier failure is stale.
            self.obtained_path.unlink(missing_ok=True)
        return state

    def _log_report(self, report: DriftReport, path: Path) -> None:
        """The comparison's line for --lens-report."""
        self._log_line(
            {
                "golden": str(path),
                "golden_class": report.golden_class,
                "ok": report.ok and report.identity_ok,
                "tolerance_note": report.tolerance_note,
                "drifts": dict(Counter(d.section for d in report.drifts)),
                "outliers": len(report.outliers),
                "near_ties": len(report.near_ties),
                "compared": dict(report.compared),
                "max_delta": report.max_delta,
            }
        )

    def _log_line(self, fields: dict[str, Any]) -> None:
        """One JSON line per model for --lens-report (short appends: safe across workers)."""
        target = self.settings.report_path
        if target is None:
            return
        run = self.lens_run
        line = {
            "model": run.model,
            "suite": self.settings.suite.name,
            "class": run.golden_class,
            "settings": run.payload["settings"],
            "backend": run.payload["environment"].get("backend"),
            **fields,
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")

    def _compare(self, golden: dict[str, Any], path: Path, *, notes: bool = True) -> DriftReport:
        tol, note = tolerances_between(
            golden, self.lens_run.payload, self.settings.tolerance_overrides
        )
        if notes and note != own_class_note(golden["class"]):
            self.note(f"{self.lens_run.model}: compared with {path} using {note}")
        report = compare_golden(
            golden,
            self.lens_run.payload,
            tol,
            tolerance_note=note,
            collapse_allowance=self.settings.allowance(self.lens_run.model),
        )
        if notes and report.removed_prompts:
            self.note(
                f"{self.lens_run.model}: {path} has prompt(s) {', '.join(report.removed_prompts)} "
                "that this suite does not run (re-bless with --snapshot-update to drop them)"
            )
        return report

    def _write_obtained(self) -> Path | None:
        """``<stem>.obtained.json`` beside the golden: what this run produced, to diff."""
        path = self.obtained_path
        try:
            atomic_write_bytes(path, dumps_golden(self.lens_run.payload).encode("utf-8"))
        except OSError as exc:
            log.warning("could not write %s: %s", path, exc)
            return None
        return path

    def note(self, text: str) -> None:
        """A line for the end-of-session "lenscheck" summary."""
        if self.node is not None:
            self.node.user_properties.append((LENSCHECK_NOTE, text))

    # ------------------------------------------------------------------- tests
    def compare(self, sections: tuple[str, ...] | str | None = None) -> DriftReport:
        """The drift report against the stored golden (``sections``: only those drifts);
        fails the test when there is no usable golden."""
        __tracebackhide__ = True
        state = self._state()
        if state.report is None:
            pytest.fail(state.problem or "no golden", pytrace=False)
        if sections is None:
            return state.report
        wanted = (sections,) if isinstance(sections, str) else sections
        return replace(
            state.report,
            drifts=[d for d in state.report.drifts if d.section in wanted],
            near_ties=[d for d in state.report.near_ties if d.section in wanted],
        )

    def check(self, sections: tuple[str, ...] | str | None = None) -> None:
        """Fail with the drift report when ``sections`` drifted beyond tolerance.

        Under ``--snapshot-update`` the golden test re-blesses the file, so the section
        checks have nothing to compare against and pass. Without a usable golden they
        skip: test_golden_file fails once, with the fix.
        """
        __tracebackhide__ = True
        if self.updating:
            return
        state = self._state()
        if state.report is None:
            pytest.skip(f"no usable golden ({self.folder}): see test_golden_file")
        wanted = (
            SECTIONS
            if sections is None
            else ((sections,) if isinstance(sections, str) else sections)
        )
        report = self.compare(wanted)
        if report.ok:
            return
        text = render_report(
            report,
            golden_path=str(state.path),
            rebless=self.rebless(),
            sections=wanted,
            limit=None if self.settings.details else _DRIFT_LINES,
        )
        text += _cross_dtype_note(report.golden_class, report.run_class, self.rebless())
        if state.obtained is not None and state.path is not None:
            text += (
                f"\n  this run's golden document: {state.obtained}"
                f"\n  compare them: {self._diff_command(state.path, state.obtained)}"
            )
        pytest.fail(text, pytrace=False)

    def check_file(self, snapshot: Any) -> None:
        """The golden file itself: created and re-blessed through syrupy's --snapshot-update;
        otherwise present, readable, current, and holding every prompt of this suite (its
        values are the section tests' business: one drift fails one test)."""
        __tracebackhide__ = True
        if self.session is not None:
            self.session.used[self.lens_run.model] = self.path
        if self.updating:
            self._bless(snapshot, self.path, self._unchanged())
            # The golden now says what this run says: an obtained file would be stale.
            self.obtained_path.unlink(missing_ok=True)
            return
        state = self._state()
        if state.report is None or state.path is None:
            pytest.fail(state.problem or "no golden", pytrace=False)
        problems = identity_problems(state.report)
        if problems:
            pytest.fail(
                f"{self.lens_run.model} ({state.path}):\n  "
                + "\n  ".join(problems)
                + f"\n  re-bless: {self.rebless()}",
                pytrace=False,
            )
        # Through syrupy all the same: its summary counts the golden, and it knows the file
        # is in use.
        self._bless(snapshot, state.path, lambda _stored: True)

    def _bless(self, snapshot: Any, path: Path, unchanged: Any) -> None:
        from lenscheck.golden.extension import LensGoldenExtension

        ext = LensGoldenExtension.for_golden(path, unchanged)
        assert snapshot(extension_class=ext) == self.lens_run.payload

    def _unchanged(self) -> Any:
        """Whether a stored golden already says what this run would write (no rewrite).

        A function of the payload and the settings only: syrupy keeps it until the session
        ends, and it must not keep the run (and the model's weights) alive with it.
        """
        s = self.settings
        return partial(
            _says_the_same,
            self.lens_run.payload,
            s.tolerance_overrides,
            s.allowance(self.lens_run.model),
        )


def _says_the_same(
    payload: dict[str, Any],
    overrides: dict[str, dict[str, float]],
    allowance: int,
    stored: dict[str, Any],
) -> bool:
    """A stored golden of the run's class that the run matches, prompts and all."""
    if stored.get("class") != payload["class"]:
        return False
    tol, _ = tolerances_between(stored, payload, overrides)
    report = compare_golden(stored, payload, tol, collapse_allowance=allowance)
    return report.ok and report.identity_ok and not report.removed_prompts
