"""The syrupy extension behind golden/: one JSON file per model and dtype/device class.

syrupy owns update (``--snapshot-update``), unused-snapshot reporting and the summary;
this extension decides where a golden lives, compares with tolerances instead of
string equality, and replaces the text diff with the drift report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from lenscheck.golden.compare import compare_golden
from lenscheck.golden.report import render_report
from lenscheck.golden.store import GoldenFormatError, dumps_golden, loads_golden
from lenscheck.golden.tolerances import Tolerances, tolerances_for

__all__ = ["LensGoldenExtension"]


class LensGoldenExtension(SingleFileSnapshotExtension):
    """Configured per model by :meth:`for_model` (syrupy calls some hooks on the class)."""

    _write_mode = WriteMode.TEXT
    file_extension = "json"
    model: ClassVar[str] = ""
    model_dir: ClassVar[Path] = Path("golden")
    golden_cls: ClassVar[str] = ""
    overrides: ClassVar[dict[str, dict[str, float]]] = {}
    allowance: ClassVar[int] = 0

    @classmethod
    def for_model(
        cls,
        *,
        model: str,
        model_dir: Path,
        golden_cls: str,
        overrides: dict[str, dict[str, float]],
        allowance: int,
    ) -> type[LensGoldenExtension]:
        """A subclass bound to one model's folder and class."""
        attrs = {
            "model": model,
            "model_dir": Path(model_dir).resolve(),
            "golden_cls": golden_cls,
            "overrides": overrides,
            "allowance": allowance,
        }
        return type(f"LensGolden_{model_dir.name}", (cls,), attrs)

    # ----------------------------------------------------------------- storage
    @classmethod
    def get_snapshot_name(cls, *, test_location: Any, index: Any = 0) -> str:
        return cls.golden_cls

    @classmethod
    def get_file_basename(cls, *, test_location: Any, index: Any) -> str:
        return cls.golden_cls

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        return str(cls.model_dir)

    @classmethod
    def discovery_dirname(cls, *, test_location: Any) -> str:
        # Only this model's folder: other models' goldens are never "unused".
        return str(cls.model_dir)

    def owns_snapshot_collection(self, *, filepath: str, test_location: Any) -> bool:
        return filepath.endswith(".json") and Path(filepath).parent == self.model_dir

    @classmethod
    def matches_test_location(cls, *, test_location: Any, snapshot_location: str) -> bool:
        return Path(snapshot_location).parent == cls.model_dir

    @classmethod
    def write_snapshot_collection(cls, *, snapshot_collection: Any, name_order: Any = None) -> None:
        from lenscheck.artifacts import atomic_write_bytes

        data = next(iter(snapshot_collection)).data
        atomic_write_bytes(Path(snapshot_collection.location), str(data).encode("utf-8"))

    # ----------------------------------------------------------- comparison
    def serialize(self, data: Any, **_: Any) -> str:
        return data if isinstance(data, str) else dumps_golden(data)

    def _compare(self, serialized: Any, stored: Any) -> tuple[bool, str]:
        try:
            golden = loads_golden(
                str(stored), source=f"{self.model_dir}/{self.golden_cls}.json", model=self.model
            )
        except GoldenFormatError as exc:
            return False, str(exc)
        observed = loads_golden(str(serialized), source="<this run>", model=self.model)
        tol, note = self._tolerances(golden["class"], observed["class"])
        report = compare_golden(
            golden, observed, tol, tolerance_note=note, collapse_allowance=self.allowance
        )
        return report.ok, render_report(
            report, golden_path=f"{self.model_dir}/{self.golden_cls}.json"
        )

    def _tolerances(self, golden_cls: str, run_cls: str) -> tuple[Tolerances, str]:
        return tolerances_for(golden_cls, run_cls, self.overrides)

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        return self._compare(serialized_data, snapshot_data)[0]

    def diff_text(self, observed: Any, stored: str) -> str:
        """The drift report for ``observed`` against the stored golden text ('' if none)."""
        return self._compare(self.serialize(observed), stored)[1] if stored else ""

    def diff_lines(self, serialized_data: Any, snapshot_data: Any) -> Iterator[str]:
        if not snapshot_data:
            return iter(())
        return iter(self._compare(serialized_data, snapshot_data)[1].splitlines())
