"""Per-session state: one lens run per model (per xdist worker), shared by its tests."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lenscheck.plugin.options import LensSettings

if TYPE_CHECKING:
    from lenscheck.golden.compare import DriftReport
    from lenscheck.runner import ModelRun

__all__ = ["CROSS_CLASS_NOTE", "GoldenHelper", "LensRun", "LensSession"]

#: user_properties key of "compared with another class's golden" notes (printed at the end).
CROSS_CLASS_NOTE = "lenscheck_cross_class"


@dataclass
class LensRun:
    """A model's lens run as tests see it."""

    model: str
    device: str
    run: ModelRun
    payload: dict[str, Any]

    @property
    def diagnostics(self) -> dict[str, Any]:
        """The JSON ``diagnostics`` block (L_copy, L_semantic, last_layer_consistency...)."""
        return self.run.result.diagnostics

    @property
    def json(self) -> dict[str, Any]:
        """The whole JSON document the CLI would write."""
        return self.run.result.json_data

    @property
    def records(self) -> list[dict[str, Any]]:
        """Records CSV rows as dicts (layer, pos, token, entropy, topk)."""
        return self.run.result.records

    @property
    def pure_records(self) -> list[dict[str, Any]]:
        """Pure next-token rows with the collapse flags."""
        return self.run.result.pure_records

    @property
    def golden_class(self) -> str:
        """``cpu-float32`` and friends."""
        return str(self.payload["class"])

    def residuals(self) -> list[Any]:
        """Every layer's residual [T, d] for the fixed prompt (captured on demand)."""
        backend = self.run.backend
        return backend.run(
            backend.encode(self.run.result.json_data["prompt"]["context_prompt"])
        ).residuals


@dataclass
class LensSession:
    """Caches runs by model; lives in ``config.stash``."""

    settings: LensSettings
    runs: dict[str, LensRun] = field(default_factory=dict)

    def get(self, model: str) -> LensRun:
        """Run ``model`` once; later calls return the same run."""
        if model not in self.runs:
            self.runs[model] = self._run(model)
        return self.runs[model]

    def _run(self, model: str) -> LensRun:
        from lenscheck.config import LensConfig
        from lenscheck.device import resolve_device
        from lenscheck.golden.payload import golden_payload
        from lenscheck.runner import run_model

        s = self.settings
        device = _worker_device(resolve_device(s.device))
        cfg = LensConfig(
            device=device,
            dtype=s.dtype,
            backend=s.backend,  # type: ignore[arg-type]
            heatmap=False,
            device_map=s.device_map,
            trust_remote_code=s.trust_remote_code,
        )
        run = run_model(model, cfg)
        payload = golden_payload(
            run.result, model=model, device=run.backend.device, top_k_verbose=cfg.top_k_verbose
        )
        return LensRun(model=model, device=run.backend.device, run=run, payload=payload)


def _worker_device(device: str) -> str:
    """Under xdist on CUDA, worker gwN takes GPU N modulo the visible count."""
    import os

    from lenscheck.plugin.gpus import assign_cuda_device

    if device != "cuda":
        return device
    import torch

    return assign_cuda_device(os.environ.get("PYTEST_XDIST_WORKER"), torch.cuda.device_count())


class GoldenHelper:
    """Compare a run with its golden: what the generated tests and users' tests call."""

    def __init__(
        self,
        lens_run: LensRun,
        settings: LensSettings,
        config: pytest.Config,
        node: pytest.Item | None = None,
    ) -> None:
        from lenscheck.golden.payload import model_dir_name

        self.lens_run = lens_run
        self.settings = settings
        self.node = node
        self.updating = bool(getattr(config.option, "update_snapshots", False))
        self.model_dir = settings.golden_dir / model_dir_name(lens_run.model)
        self.path = self.model_dir / f"{lens_run.golden_class}.json"

    def _missing(self) -> str:
        from lenscheck.golden.report import rebless_command

        return (
            f"no golden for {self.lens_run.model} ({self.lens_run.golden_class}) in "
            f"{self.model_dir}; create it with: {rebless_command(self.lens_run.model)}"
        )

    def _read(self, path: Path) -> dict[str, Any]:
        """The golden at ``path``; an unusable file fails the test with the store's message."""
        __tracebackhide__ = True
        from lenscheck.golden.store import GoldenFormatError, read_golden

        try:
            return read_golden(path, model=self.lens_run.model)
        except GoldenFormatError as exc:
            message = str(exc)
        # Outside the except block: a Failed raised inside it is chained to the
        # GoldenFormatError and pytest would print the message twice.
        pytest.fail(message, pytrace=False)

    def golden_path(self) -> Path | None:
        """The golden this run compares with (its own class first, else another class)."""
        from lenscheck.golden.store import find_golden

        return find_golden(self.model_dir, self.lens_run.golden_class)

    def compare(self, sections: tuple[str, ...] | None = None) -> DriftReport:
        """The drift report against the stored golden; fails the test if there is none."""
        __tracebackhide__ = True
        from lenscheck.golden.compare import SECTIONS, compare_golden
        from lenscheck.golden.tolerances import tolerances_for

        path = self.golden_path()
        if path is None:
            pytest.fail(self._missing(), pytrace=False)
        golden = self._read(path)
        tol, note = tolerances_for(
            golden["class"], self.lens_run.golden_class, self.settings.tolerance_overrides
        )
        if golden["class"] != self.lens_run.golden_class and self.node is not None:
            # Say so in the run's output, also when it passes (see pytest_terminal_summary).
            self.node.user_properties.append(
                (CROSS_CLASS_NOTE, f"{self.lens_run.model}: compared with {path} using {note}")
            )
        return compare_golden(
            golden,
            self.lens_run.payload,
            tol,
            tolerance_note=note,
            collapse_allowance=self.settings.allowance(self.lens_run.model),
            sections=sections or SECTIONS,
        )

    def check(self, sections: tuple[str, ...] | None = None) -> None:
        """Fail with the drift report when ``sections`` drifted beyond tolerance.

        Under ``--snapshot-update`` the golden test re-blesses the file, so the
        section checks have nothing to compare against and pass.
        """
        __tracebackhide__ = True
        from lenscheck.golden.report import render_report

        if self.updating:
            return
        report = self.compare(sections)
        if not report.ok:
            pytest.fail(render_report(report, golden_path=str(self.golden_path())), pytrace=False)

    def assert_snapshot(self, snapshot: Any) -> None:
        """The syrupy assertion that creates, updates or checks the whole golden file."""
        __tracebackhide__ = True
        from lenscheck.golden.extension import LensGoldenExtension

        if not self.updating:
            if not self.path.exists():
                # No golden of this class: compare with another class's, or say how to create one.
                self.check()
                return
            self._read(self.path)
        ext = LensGoldenExtension.for_model(
            model=self.lens_run.model,
            model_dir=self.model_dir,
            golden_cls=self.lens_run.golden_class,
            overrides=self.settings.tolerance_overrides,
            allowance=self.settings.allowance(self.lens_run.model),
        )
        assertion = snapshot(extension_class=ext)
        with warnings.catch_warnings():
            # syrupy cannot relate "cpu-float32.json" to the test name; the extension does.
            warnings.filterwarnings("ignore", message="Can not relate snapshot")
            matched = assertion == self.lens_run.payload
        if not matched:
            stored = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
            report = ext().diff_text(self.lens_run.payload, stored)
            pytest.fail(report or "\n".join(assertion.get_assert_diff()), pytrace=False)
