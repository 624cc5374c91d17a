"""Model specs -> ResolvedModel, model lists, and the race-safe cache they rely on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lenscheck.models
from lenscheck.models import (
    EMBEDDED_NAME,
    SYNTHETIC_ALIASES,
    ModelNotAvailable,
    ResolvedModel,
    atomic_build_dir,
    cache_root,
    expand_model_list,
    resolve_model,
    safe_name,
)
from lenscheck.models import resolve as resolve_mod
from lenscheck.models.cache import COMPLETE_MARKER

REPO_ROOT = Path(lenscheck.models.__file__).resolve().parents[2]


# --- cache ---------------------------------------------------------------------------


def test_cache_root_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LENSCHECK_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("LENSCHECK_CACHE")
    import platformdirs

    assert cache_root() == Path(platformdirs.user_cache_dir("lenscheck"))


def test_atomic_build_dir_builds_once(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build(out: Path) -> None:
        calls.append(out)
        (out / "payload.txt").write_text("hello", encoding="utf-8")

    final = tmp_path / "entry-v1.2"  # a dotted name: the lock must not replace ".2"
    assert atomic_build_dir(final, build) == final
    mtime = (final / "payload.txt").stat().st_mtime_ns
    assert atomic_build_dir(final, build) == final
    assert len(calls) == 1
    assert calls[0] != final  # built elsewhere, renamed into place
    assert (final / "payload.txt").stat().st_mtime_ns == mtime
    assert (final / COMPLETE_MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry-v1.2", "entry-v1.2.lock"]


def test_atomic_build_dir_cleans_up_after_a_failed_build(tmp_path: Path) -> None:
    def broken(out: Path) -> None:
        (out / "half-written").write_text("x", encoding="utf-8")
        raise OSError("disk full")

    final = tmp_path / "entry"
    with pytest.raises(OSError, match="disk full"):
        atomic_build_dir(final, broken)
    assert [p.name for p in tmp_path.iterdir()] == ["entry.lock"]
    # A later call succeeds normally.
    atomic_build_dir(final, lambda out: (out / "ok").touch())
    assert (final / "ok").is_file()


def test_atomic_build_dir_replaces_an_incomplete_leftover(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    final.mkdir()
    (final / "stale").touch()  # no marker: e.g. a copy interrupted by a crash
    atomic_build_dir(final, lambda out: (out / "fresh").touch())
    assert sorted(p.name for p in final.iterdir()) == [COMPLETE_MARKER, "fresh"]


_RACER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from lenscheck.models.cache import atomic_build_dir

    final, counter, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    while not go.exists():  # start together
        time.sleep(0.005)

    def build(out: Path) -> None:
        with open(counter, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        time.sleep(0.5)  # long enough that the other process surely contends
        (out / "owner").write_text(str(os.getpid()))

    print(atomic_build_dir(final, build))
    """
)


def test_two_processes_racing_end_with_one_valid_dir(tmp_path: Path) -> None:
    final, counter, go = tmp_path / "cache" / "entry", tmp_path / "builds", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(final), str(counter), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    time.sleep(0.2)
    go.touch()
    results = [racer.communicate(timeout=60) for racer in racers]
    for racer, (out, err) in zip(racers, results):
        assert racer.returncode == 0, err
        assert Path(out.strip()) == final
    builders = counter.read_text().split()
    assert len(builders) == 1  # the loser found the winner's directory
    assert (final / "owner").read_text() == builders[0]
    assert sorted(p.name for p in final.parent.iterdir()) == ["entry", "entry.lock"]


# --- resolve_model --------------------------------------------------------------------


def test_embedded_resolves_to_the_cached_checkpoint() -> None:
    resolved = resolve_model("  embedded ")
    assert resolved.source == "embedded"
    assert resolved.requested == "embedded"
    # Named like the original pipeline named output files: the model id after its last "/".
    assert resolved.name == EMBEDDED_NAME == "SmolLM2-135M-Instruct"
    assert (Path(resolved.path) / "config.json").is_file()


def test_synthetic_alias_resolves_to_its_checkpoint() -> None:
    resolved = resolve_model("synthetic-llama")
    assert resolved == ResolvedModel(
        "synthetic-llama", "synthetic-llama", resolved.path, "synthetic"
    )
    assert Path(resolved.path).name.startswith("synthetic-llama-")


@pytest.mark.parametrize("spec", ["synthetic", "synthetic-bert", "", "   "])
def test_invalid_special_specs_raise_value_error(spec: str) -> None:
    with pytest.raises(ValueError):
        resolve_model(spec, offline=True)


def test_local_checkpoint_directory(tmp_path: Path) -> None:
    checkpoint = tmp_path / "my model@v2"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}", encoding="utf-8")
    resolved = resolve_model(str(checkpoint) + "/", offline=True)
    assert resolved.source == "local"
    assert resolved.name == "my_model_v2"
    assert Path(resolved.path) == checkpoint.resolve()


def test_directory_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no config\.json"):
        resolve_model(str(tmp_path), offline=True)


@pytest.fixture
def empty_hf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point huggingface_hub at an empty cache and forbid the network probe."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(resolve_mod, "_hub_reachable", _probe_must_not_run)
    return tmp_path / "hf"


def _probe_must_not_run() -> bool:
    raise AssertionError("the hub probe ran although the answer was already known")


def test_offline_hub_id_not_cached_lists_the_alternatives(empty_hf_cache: Path) -> None:
    with pytest.raises(ModelNotAvailable) as info:
        resolve_model("meta-llama/Meta-Llama-3-8B", offline=True)
    message = str(info.value)
    assert isinstance(info.value, LookupError)
    assert "meta-llama/Meta-Llama-3-8B" in message
    assert "offline" in message and "unreachable" in message
    for alternative in ("embedded", *SYNTHETIC_ALIASES):
        assert alternative in message


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_environment_is_honoured(
    empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ModelNotAvailable):
        resolve_model("gpt2")


def test_unreachable_hub_is_detected_when_offline_is_unknown(
    empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolve_mod, "_hub_reachable", lambda: False)
    with pytest.raises(ModelNotAvailable):
        resolve_model("gpt2")
    monkeypatch.setattr(resolve_mod, "_hub_reachable", lambda: True)
    assert resolve_model("gpt2") == ResolvedModel("gpt2", "gpt2", "gpt2", "hub")


def test_online_hub_id_resolves_without_probing(empty_hf_cache: Path) -> None:
    resolved = resolve_model("meta-llama/Meta-Llama-3-8B", offline=False)
    assert resolved == ResolvedModel(
        "meta-llama/Meta-Llama-3-8B", "Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B", "hub"
    )


def test_cached_hub_id_resolves_offline(empty_hf_cache: Path) -> None:
    repo = empty_hf_cache / "models--org--tiny"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}", encoding="utf-8")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40, encoding="utf-8")
    resolved = resolve_model("org/tiny", offline=True)
    assert (resolved.source, resolved.path, resolved.name) == ("hub", "org/tiny", "tiny")


def test_malformed_hub_id_is_a_value_error(empty_hf_cache: Path) -> None:
    with pytest.raises(ValueError):
        resolve_model("a/b/c", offline=True)


# --- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("meta-llama/Meta-Llama-3-8B", "Meta-Llama-3-8B"),
        ("gpt2", "gpt2"),
        ("org\\win name", "win_name"),
        ("org/name:rev", "name_rev"),
        ("...", "..."),
    ],
)
def test_safe_name(text: str, expected: str) -> None:
    assert safe_name(text) == expected


@pytest.mark.parametrize("text", ["", "org/", "org/..", ".", "a\\.."])
def test_safe_name_rejects_unusable_stems(text: str) -> None:
    with pytest.raises(ValueError):
        safe_name(text)


@given(st.text(max_size=40))
def test_safe_name_is_always_file_safe(text: str) -> None:
    try:
        name = safe_name(text)
    except ValueError:
        return
    assert name not in ("", ".", "..")
    assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in name)


# --- expand_model_list ------------------------------------------------------------------


def test_expand_model_list_expands_and_deduplicates() -> None:
    text = " synthetic-neox, embedded ,, synthetic ,embedded, org/m "
    assert expand_model_list(text) == [
        "synthetic-neox",
        "embedded",
        *[a for a in SYNTHETIC_ALIASES if a != "synthetic-neox"],
        "org/m",
    ]


@pytest.mark.parametrize("text", ["", " ", ", ,"])
def test_expand_model_list_rejects_an_empty_list(text: str) -> None:
    with pytest.raises(ValueError, match="no model"):
        expand_model_list(text)
