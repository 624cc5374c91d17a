"""lenscheck.artifacts: safe output names, atomic writes, JSON bytes, run-latest rotation."""

from __future__ import annotations

import inspect
import json
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lenscheck.artifacts import (
    atomic_write_bytes,
    clean_model_name,
    dump_json_bytes,
    output_paths,
    setup_run_latest_directory,
    staged_run_latest,
    write_files_atomically,
)

SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")


# ---------------------------------------------------------------------------- model names


@pytest.mark.parametrize(
    ("model_id", "name"),
    [
        ("meta-llama/Meta-Llama-3-8B", "Meta-Llama-3-8B"),
        ("google/gemma-2-9b", "gemma-2-9b"),
        ("embedded", "embedded"),
        ("org/name/", "name"),
        ("  org/name  ", "name"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32", "system32"),
        ("a\\b", "b"),
        ("weird name:v1?", "weird_name_v1_"),
        ("org/.hidden", ".hidden"),
        ("org/x\x00y", "x_y"),
        ("org/Ünïcode", "_n_code"),
    ],
)
def test_clean_model_name(model_id: str, name: str) -> None:
    assert clean_model_name(model_id) == name


@pytest.mark.parametrize(
    "model_id", ["", "  ", "..", ".", "...", "a/..", "a/.", "a\\..", "a/../", "/", "\\", "org/..\\"]
)
def test_clean_model_name_refuses_names_that_escape(model_id: str) -> None:
    with pytest.raises(ValueError, match="no usable file name"):
        clean_model_name(model_id)


@given(
    model_id=st.text(st.sampled_from("./\\ab_-:\x00 é") | st.characters(codec="utf-8"), max_size=20)
)
def test_output_paths_never_leave_the_output_directory(model_id: str) -> None:
    out = Path("/srv/out")
    try:
        name = clean_model_name(model_id)
    except ValueError:
        # refused only when the part after the last separator is empty or only dots
        last = re.split(r"[/\\]", model_id.strip().rstrip("/\\"))[-1]
        assert set(last) <= {"."}
        return
    assert SAFE_NAME.fullmatch(name)
    assert name.strip(".") != ""
    for path in output_paths(out, model_id).all():
        assert path.parent == out
        assert os.path.normpath(path) == str(path)  # no '..' or '.' component to collapse
        assert path.name.startswith("output-" + name)


# ----------------------------------------------------------------------------- JSON bytes


def test_dump_json_bytes_format() -> None:
    data = {"prompt": {"text": "⟨NEXT⟩ é"}, "b": [1, 2.5, None, True], "a": {}}
    out = dump_json_bytes(data)
    assert (
        out
        == (
            '{\n  "prompt": {\n    "text": "⟨NEXT⟩ é"\n  },\n  "b": [\n    1,\n    2.5,\n'
            '    null,\n    true\n  ],\n  "a": {}\n}'
        ).encode()
    )
    assert not out.endswith(b"\n")
    assert list(json.loads(out)) == ["prompt", "b", "a"]  # insertion order kept, not sorted


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_dump_json_bytes_refuses_non_finite(bad: float) -> None:
    with pytest.raises(ValueError):
        dump_json_bytes({"x": bad})


# -------------------------------------------------------------------------- atomic writes


def test_atomic_write_bytes_writes_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


@pytest.mark.parametrize("existing", [None, b"old contents"])
def test_atomic_write_leaves_no_partial_file_when_replace_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bytes | None
) -> None:
    target = tmp_path / "out.json"
    if existing is not None:
        target.write_bytes(existing)

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new contents that must never be seen half-written")
    monkeypatch.undo()
    names = [p.name for p in tmp_path.iterdir()]
    if existing is None:
        assert names == []
    else:
        assert names == ["out.json"]
        assert target.read_bytes() == existing


def test_atomic_write_cleans_up_when_the_write_itself_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half the bytes reach the disk, then the device is full: the part file goes away."""
    import builtins

    import lenscheck.artifacts as artifacts

    class HalfWriter:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def write(self, data: bytes) -> int:
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError("No space left on device")

    def half_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> HalfWriter:
        return HalfWriter(builtins.open(path, mode, *args, **kwargs))

    target = tmp_path / "x.bin"
    target.write_bytes(b"previous")
    monkeypatch.setattr(artifacts, "open", half_open, raising=False)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"0123456789" * 100)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]
    assert target.read_bytes() == b"previous"


def test_write_files_atomically_renames_nothing_if_staging_fails(tmp_path: Path) -> None:
    good = tmp_path / "a.csv"
    good.write_bytes(b"old a")
    missing_dir = tmp_path / "no-such-dir" / "b.csv"
    with pytest.raises(OSError):
        write_files_atomically({good: b"new a", missing_dir: b"new b"})
    assert good.read_bytes() == b"old a"  # staging failed before any rename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]
    write_files_atomically({good: b"new a", tmp_path / "c.csv": b"c"})
    assert good.read_bytes() == b"new a" and (tmp_path / "c.csv").read_bytes() == b"c"


# ---------------------------------------------------------------------- run-latest rotation


def clock(*stamps: str):  # type: ignore[no-untyped-def]
    """A fake ``now`` returning the given ``YYYY-mm-dd HH:MM:SS`` instants in turn."""
    times = iter(datetime.strptime(s, "%Y-%m-%d %H:%M:%S") for s in stamps)
    return lambda: next(times)


def _dirs(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir())


def test_first_run_creates_run_latest_with_timestamp(tmp_path: Path) -> None:
    out = setup_run_latest_directory(tmp_path, now_fn=clock("2025-01-02 03:04:05"))
    assert out == str(tmp_path / "run-latest")
    assert _dirs(tmp_path) == ["run-latest"]
    assert _dirs(tmp_path / "run-latest") == ["timestamp-20250102-0304"]
    stamp = tmp_path / "run-latest" / "timestamp-20250102-0304"
    assert stamp.read_text(encoding="utf-8") == "Experiment started: 2025-01-02 03:04:05\n"


def test_rotation_uses_the_old_timestamp(tmp_path: Path) -> None:
    now = clock("2025-01-02 03:04:05", "2025-01-02 09:30:00")
    setup_run_latest_directory(tmp_path, now_fn=now)
    (tmp_path / "run-latest" / "result.csv").write_text("first run")
    setup_run_latest_directory(tmp_path, now_fn=now)
    assert _dirs(tmp_path) == ["run-20250102-0304", "run-latest"]
    assert (tmp_path / "run-20250102-0304" / "result.csv").read_text() == "first run"
    assert _dirs(tmp_path / "run-latest") == ["timestamp-20250102-0930"]


def test_rotation_without_timestamp_uses_now_and_rotated_suffix(tmp_path: Path) -> None:
    (tmp_path / "run-latest").mkdir()
    (tmp_path / "run-latest" / "legacy.json").write_text("{}")
    setup_run_latest_directory(tmp_path, now_fn=clock("2024-12-31 23:59:59"))
    assert _dirs(tmp_path) == ["run-20241231-2359-rotated", "run-latest"]
    assert (tmp_path / "run-20241231-2359-rotated" / "legacy.json").read_text() == "{}"
    assert _dirs(tmp_path / "run-latest") == ["timestamp-20241231-2359"]


def test_same_minute_runs_never_overwrite(tmp_path: Path) -> None:
    now = clock(*[f"2025-06-01 12:00:0{i}" for i in range(4)])
    for i in range(4):
        latest = Path(setup_run_latest_directory(tmp_path, now_fn=now))
        (latest / "marker").write_text(str(i))
    names = _dirs(tmp_path)
    assert len(names) == 4 and "run-latest" in names and "run-20250601-1200" in names
    markers = sorted((tmp_path / n / "marker").read_text() for n in names)
    assert markers == ["0", "1", "2", "3"]  # every run's output survived
    assert (tmp_path / "run-20250601-1200" / "marker").read_text() == "0"  # oldest kept its name
    assert all(n.startswith("run-20250601-1200") for n in names if n != "run-latest")


def test_same_minute_rotations_without_timestamps(tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / "run-latest").mkdir()
        (tmp_path / "run-latest" / "marker").write_text(str(i))
        setup_run_latest_directory(tmp_path, now_fn=clock("2025-06-01 12:00:00"))
        (tmp_path / "run-latest" / "timestamp-20250601-1200").unlink()
        (tmp_path / "run-latest").rmdir()
    names = _dirs(tmp_path)
    assert "run-20250601-1200-rotated" in names and len(names) == 2
    assert sorted((tmp_path / n / "marker").read_text() for n in names) == ["0", "1"]


def test_default_clock_is_datetime_now() -> None:
    param = inspect.signature(setup_run_latest_directory).parameters["now_fn"]
    assert param.default == datetime.now
    with tempfile.TemporaryDirectory() as tmp:
        before = datetime.now().replace(second=0, microsecond=0)
        latest = Path(setup_run_latest_directory(tmp))
        [stamp] = [p.name for p in latest.iterdir()]
        got = datetime.strptime(stamp, "timestamp-%Y%m%d-%H%M")
        assert before <= got <= datetime.now()


def test_failed_rename_midway_restores_the_previous_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun into a folder with old outputs fails on its second rename: the first file,
    already replaced, gets its old bytes back, and no staged part or backup remains."""
    import lenscheck.artifacts as artifacts

    a, b = tmp_path / "output-a.csv", tmp_path / "output-a.json"
    a.write_bytes(b"old a")
    b.write_bytes(b"old b")
    real_replace = os.replace
    calls: list[str] = []

    def flaky(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(Path(dst).name)
        if Path(src).suffix == ".part" and Path(dst) == b:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", flaky)
    with pytest.raises(OSError, match="disk full"):
        artifacts.write_files_atomically({a: b"new a", b: b"new b"})
    assert a.read_bytes() == b"old a"
    assert b.read_bytes() == b"old b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output-a.csv", "output-a.json"]


def test_successful_rewrite_replaces_every_file_and_drops_backups(tmp_path: Path) -> None:
    import lenscheck.artifacts as artifacts

    a = tmp_path / "output-a.csv"
    a.write_bytes(b"old")
    artifacts.write_files_atomically({a: b"new", tmp_path / "output-a.json": b"{}"})
    assert a.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output-a.csv", "output-a.json"]


# ------------------------------------------------------------- a run staged before rotation


def _clock(stamp: str) -> Any:
    return lambda: datetime.strptime(stamp, "%Y%m%d-%H%M")


def test_a_staged_run_becomes_run_latest_only_when_it_succeeds(tmp_path: Path) -> None:
    setup_run_latest_directory(tmp_path, now_fn=_clock("20260101-0900"))
    (tmp_path / "run-latest" / "output-a.json").write_text("{}", encoding="utf-8")
    with staged_run_latest(tmp_path, now_fn=_clock("20260101-1000")) as stage:
        assert stage.folder.parent == tmp_path and stage.folder.name.startswith(".run-")
        assert (tmp_path / "run-latest" / "output-a.json").exists()  # still the old run
        (stage.folder / "output-b.json").write_text("{}", encoding="utf-8")
        stage.succeeded = True
    assert stage.final == tmp_path / "run-latest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-20260101-0900", "run-latest"]
    assert sorted(p.name for p in (tmp_path / "run-latest").iterdir()) == [
        "output-b.json",
        "timestamp-20260101-1000",
    ]
    assert (tmp_path / "run-20260101-0900" / "output-a.json").exists()


@pytest.mark.parametrize("failure", [None, KeyboardInterrupt(), RuntimeError("model broke")])
def test_a_failed_run_keeps_its_files_apart_and_says_why(
    tmp_path: Path, failure: BaseException | None
) -> None:
    setup_run_latest_directory(tmp_path, now_fn=_clock("20260101-0900"))
    before = sorted(p.name for p in (tmp_path / "run-latest").iterdir())

    def run() -> None:
        with staged_run_latest(tmp_path, now_fn=_clock("20260101-1000")) as stage:
            (stage.folder / "output-b.json").write_text("{}", encoding="utf-8")
            stage.reason = "synthetic-gpt2: failed (3)"
            if failure is not None:
                raise failure

    if failure is None:
        run()
    else:
        with pytest.raises(type(failure)):
            run()
    failed = tmp_path / "run-20260101-1000-failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-20260101-1000-failed", "run-latest"]
    assert sorted(p.name for p in (tmp_path / "run-latest").iterdir()) == before
    why = {
        None: "synthetic-gpt2: failed (3)",
        KeyboardInterrupt: "interrupted (Ctrl-C)",
        RuntimeError: "RuntimeError('model broke')",
    }[None if failure is None else type(failure)]
    assert (failed / "FAILED.txt").read_text(encoding="utf-8") == why + "\n"
    assert (failed / "output-b.json").exists()


def test_a_failed_run_that_wrote_nothing_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), staged_run_latest(tmp_path) as stage:
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    assert stage.final == tmp_path / "run-latest"
