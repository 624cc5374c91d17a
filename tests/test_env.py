"""``lenscheck env`` and the environment-keyed model cache it reports.

The cache half: entries are keyed by the transformers major that wrote them, so one cache
folder serves environments with different transformers side by side, and an entry of
another format is refused with a message instead of loaded (a transformers 5 tokenizer
config names ``TokenizersBackend``, which 4.x cannot load).
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from lenscheck import env
from lenscheck.models import cache
from lenscheck.models.cache import (
    COMPLETE_MARKER,
    IncompatibleCacheEntry,
    atomic_build_dir,
    cache_format,
    entry_dir,
    entry_info,
    is_ready,
)
from lenscheck.models.embedded import (
    EMBEDDED_SHA256,
    embedded_checkpoint_dir,
    ensure_embedded_checkpoint,
)
from lenscheck.models.synthetic import (
    SYNTHETIC_VERSION,
    ensure_synthetic_checkpoint,
    synthetic_checkpoint_dir,
)

MAJOR = version("transformers").split(".")[0]


def _fake_entry(path: Path, marker: str) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}", encoding="utf-8")
    (path / COMPLETE_MARKER).write_text(marker, encoding="utf-8")
    return path


def _marker(fmt: str, transformers: str) -> str:
    return json.dumps({"format": fmt, "transformers": transformers, "lenscheck": "0.1.0"})


# ------------------------------------------------------------------------- cache format


def test_format_is_the_transformers_major() -> None:
    assert cache_format() == f"transformers{MAJOR}"


def test_entry_names_carry_the_format(tmp_path: Path) -> None:
    fmt = cache_format()
    assert entry_dir("x-v1", tmp_path) == tmp_path / f"x-v1-{fmt}"
    assert embedded_checkpoint_dir(tmp_path) == tmp_path / f"embedded-{EMBEDDED_SHA256[:12]}-{fmt}"
    llama = synthetic_checkpoint_dir("synthetic-llama", tmp_path)
    assert llama == tmp_path / f"synthetic-llama-{SYNTHETIC_VERSION}-{fmt}"


def test_two_transformers_majors_use_two_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = embedded_checkpoint_dir(tmp_path)
    monkeypatch.setattr(cache, "_transformers_version", lambda: "4.57.6")
    there = embedded_checkpoint_dir(tmp_path)
    assert there.name.endswith("-transformers4") and here != there


def test_marker_records_format_and_versions(tmp_path: Path) -> None:
    final = atomic_build_dir(tmp_path / "entry", lambda out: (out / "f").touch())
    info = entry_info(final)
    assert info["format"] == cache_format()
    assert info["transformers"] == version("transformers")
    assert "lenscheck" in info
    assert is_ready(final) is True


def test_incomplete_entry_is_not_ready(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    assert is_ready(tmp_path / "half") is False
    assert is_ready(tmp_path / "absent") is False


def test_entry_of_another_format_is_refused_with_the_fix(tmp_path: Path) -> None:
    entry = _fake_entry(tmp_path / "e", _marker("transformers4", "4.57.6"))
    with pytest.raises(IncompatibleCacheEntry) as info:
        is_ready(entry)
    message = str(info.value)
    for needle in (
        str(entry),
        "4.57.6",
        "transformers4",
        version("transformers"),
        cache_format(),
        "Delete the folder",
        "LENSCHECK_CACHE",
    ):
        assert needle in message, needle
    # ... and atomic_build_dir refuses it too instead of returning or rebuilding it.
    with pytest.raises(IncompatibleCacheEntry):
        atomic_build_dir(entry, lambda out: pytest.fail("must not rebuild"))
    assert (entry / "config.json").is_file()


def test_marker_without_format_is_accepted(tmp_path: Path) -> None:
    """Entries written before the marker recorded a format (``ok``) stay readable."""
    entry = _fake_entry(tmp_path / "old", "ok\n")
    assert entry_info(entry) == {}
    assert is_ready(entry) is True


def test_incompatible_embedded_entry_is_refused_before_any_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lenscheck.models.embedded as embedded

    monkeypatch.setattr(embedded, "_convert_gguf", lambda *a: pytest.fail("converted"))
    # A folder renamed by hand to this environment's name, written by transformers 4.
    _fake_entry(embedded_checkpoint_dir(tmp_path), _marker("transformers4", "4.57.6"))
    with pytest.raises(IncompatibleCacheEntry, match=r"written by transformers 4\.57\.6"):
        ensure_embedded_checkpoint(tmp_path)


def test_incompatible_synthetic_entry_is_refused(tmp_path: Path) -> None:
    _fake_entry(
        synthetic_checkpoint_dir("synthetic-gpt2", tmp_path), _marker("transformers9", "9.0")
    )
    with pytest.raises(IncompatibleCacheEntry):
        ensure_synthetic_checkpoint("synthetic-gpt2", tmp_path)


def test_format_without_transformers_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import PackageNotFoundError

    def missing(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr("importlib.metadata.version", missing)
    with pytest.raises(RuntimeError, match="needs transformers, which is not installed"):
        cache_format()


# --------------------------------------------------------------------------- lenscheck env


def test_collect_reports_versions_devices_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LENSCHECK_CACHE", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    info = env.collect()
    assert list(info) == ["python", "versions", "devices", "cache"]
    assert info["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    versions = info["versions"]
    for dist in ("lenscheck", "torch", "transformers", "transformer-lens", "syrupy"):
        assert dist in versions
    assert versions["torch"] == version("torch")
    devices = info["devices"]
    assert devices["CUDA_VISIBLE_DEVICES"] == "1,0"
    assert devices["cuda_device_count"] == len(devices["cuda_devices"])
    assert isinstance(devices["mps_available"], bool)
    assert "torch_cuda" in devices
    c = info["cache"]
    assert (c["folder"], c["source"], c["format"]) == (
        str(tmp_path),
        "$LENSCHECK_CACHE",
        cache_format(),
    )
    assert c["embedded_checkpoint"] == str(embedded_checkpoint_dir(tmp_path))
    assert c["embedded_provisioned"] is False and c["entries"] == []
    json.dumps(info)  # JSON-ready as is


def test_provisioned_embedded_entry_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LENSCHECK_CACHE", str(tmp_path))
    entry = _fake_entry(embedded_checkpoint_dir(tmp_path), _marker(cache_format(), "x"))
    info = env.collect()
    assert info["cache"]["embedded_provisioned"] is True
    assert info["cache"]["entries"] == [entry.name]
    assert f"embedded model: provisioned ({entry})" in env.render_text(info)


def test_default_cache_folder_comes_from_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.delenv("LENSCHECK_CACHE", raising=False)
    c = env.collect()["cache"]
    assert c["folder"] == platformdirs.user_cache_dir("lenscheck")
    assert c["source"] == "platformdirs user cache dir"


def test_missing_library_and_broken_torch_are_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert env._version("no-such-distribution-lenscheck") == env.NOT_INSTALLED
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    devices = env._devices()
    assert devices["error"].startswith("torch cannot be imported")
    info = {**env.collect(), "devices": devices}
    assert "torch cannot be imported" in env.render_text(info)


def test_render_text_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LENSCHECK_CACHE", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    text = env.render_text(env.collect())
    lines = text.splitlines()
    assert lines[0].startswith(f"python: {sys.version_info.major}.{sys.version_info.minor}")
    assert f"torch: {version('torch')}" in lines
    assert "  CUDA_VISIBLE_DEVICES: (unset)" in lines
    assert f"  folder: {tmp_path} (from $LENSCHECK_CACHE)" in lines
    assert f"  format: {cache_format()} (entries are keyed by the transformers major)" in lines
    assert "  entries: none" in lines
    assert any(line.startswith("  embedded model: not provisioned (") for line in lines)
