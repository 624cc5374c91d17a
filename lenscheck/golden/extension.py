"""The syrupy extension behind golden files: one JSON document per model, suite and class.

syrupy owns creation and re-blessing (``--snapshot-update``) and its summary line; this
extension decides where a golden lives, owns exactly that one file (other classes, suites
and ``.obtained.json`` files beside it are never "unused"), and decides with tolerances,
not string equality, whether a stored golden still says what the run would write.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from lenscheck.artifacts import atomic_write_bytes
from lenscheck.golden.store import GoldenFormatError, dumps_golden, loads_golden

__all__ = ["LensGoldenExtension"]


class LensGoldenExtension(SingleFileSnapshotExtension):
    """Bound to one golden file by :meth:`for_golden` (syrupy calls some hooks on the class)."""

    _write_mode = WriteMode.TEXT
    file_extension = "json"
    path: ClassVar[Path] = Path("golden.json")
    #: Whether a stored document (parsed) already matches the run: no rewrite when True.
    #: A one-element tuple: a bare function in a class attribute would become a method.
    unchanged: ClassVar[tuple[Callable[[dict[str, Any]], bool]]] = ((lambda _doc: False),)

    @classmethod
    def for_golden(
        cls, path: Path, unchanged: Callable[[dict[str, Any]], bool]
    ) -> type[LensGoldenExtension]:
        """A subclass bound to the golden at ``path``."""
        attrs = {"path": Path(path).resolve(), "unchanged": (unchanged,)}
        return type(f"LensGolden_{Path(path).parent.name}_{Path(path).stem}", (cls,), attrs)

    # ----------------------------------------------------------------- storage
    @classmethod
    def get_snapshot_name(cls, *, test_location: Any, index: Any = 0) -> str:
        return cls.path.stem

    @classmethod
    def get_file_basename(cls, *, test_location: Any, index: Any) -> str:
        return cls.path.stem

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        return str(cls.path.parent)

    @classmethod
    def discovery_dirname(cls, *, test_location: Any) -> str:
        return str(cls.path.parent)

    def owns_snapshot_collection(self, *, filepath: str, test_location: Any) -> bool:
        return Path(filepath).resolve() == self.path

    @classmethod
    def matches_test_location(cls, *, test_location: Any, snapshot_location: str) -> bool:
        return Path(snapshot_location).resolve() == cls.path

    @classmethod
    def write_snapshot(cls, **kwargs: Any) -> None:
        """syrupy's write, minus its warning that ``<class>.json`` does not name the test:
        a golden is named by its class on purpose. Scoped to this extension's writes, not
        a filter on the user's whole session."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\s*Can not relate snapshot")
            super().write_snapshot(**kwargs)

    @classmethod
    def write_snapshot_collection(cls, *, snapshot_collection: Any, name_order: Any = None) -> None:
        data = next(iter(snapshot_collection)).data
        path = Path(snapshot_collection.location)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, str(data).encode("utf-8"))

    # ----------------------------------------------------------- comparison
    def serialize(self, data: Any, **_: Any) -> str:
        return data if isinstance(data, str) else dumps_golden(data)

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        try:
            stored = loads_golden(str(snapshot_data), source=str(self.path))
        except GoldenFormatError:
            return False  # unreadable or an old format: rewrite it
        return bool(self.unchanged[0](stored))

    def diff_lines(self, serialized_data: Any, snapshot_data: Any) -> Iterator[str]:
        # Only reached when re-blessing failed to write; the section tests report drift.
        return iter(())
