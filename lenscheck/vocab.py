"""The words lenscheck's files, options and goldens are spelled with, each owned here once.

Decoding points, presets, BOS policies, dtype and device names, backends, output-file and
golden-file suffixes: every module that writes or reads one imports it from here, so a
renamed value is one edit and a typo is a NameError, not a silent mismatch. Standard library
only: the pytest plugin's entry module imports this in every session.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "BACKENDS",
    "BOS_ALWAYS",
    "BOS_AUTO",
    "BOS_NEVER",
    "BOS_POLICIES",
    "DECODE_POINTS",
    "DEFAULT_COPY_MARGIN",
    "DEFAULT_COPY_THRESHOLD",
    "DEVICES",
    "DTYPES",
    "DTYPE_ALIASES",
    "FINAL",
    "HALF_DTYPES",
    "NEXT_LN1",
    "OBTAINED_SUFFIX",
    "OUTPUT_PREFIX",
    "OUTPUT_SUFFIXES",
    "PRESETS",
    "PRESET_ORIGINAL",
    "PRESET_STANDARD",
    "RAW",
    "SCHEMAS",
    "SCHEMA_EXTENDED",
    "SCHEMA_ORIGINAL",
    "TOP_K_RECORD",
    "TOP_K_VERBOSE",
    "Backend",
    "BosPolicy",
    "DecodePoint",
    "OutputKind",
    "Preset",
    "Schema",
]

#: Where the lens decodes each layer's residual. ``next-ln1``: the norm the model itself
#: applies to that residual next (the original pipeline's rule); ``final``: the norm in front
#: of the unembedding, at every layer (the standard logit lens); ``raw``: none.
DecodePoint = Literal["next-ln1", "final", "raw"]
NEXT_LN1: Final = "next-ln1"
FINAL: Final = "final"
RAW: Final = "raw"
DECODE_POINTS: tuple[DecodePoint, ...] = get_args(DecodePoint)

#: Whose conventions a run follows by default: the model's own (``standard``) or the
#: original pipeline's (``original``: next-ln1, BOS always, its schema).
Preset = Literal["standard", "original"]
PRESET_STANDARD: Final = "standard"
PRESET_ORIGINAL: Final = "original"
PRESETS: tuple[Preset, ...] = get_args(Preset)

#: What the files hold: ``original``, the original pipeline's columns, JSON keys and collapse
#: rules byte for byte; ``extended``, lenscheck's (the embeddings' layer apart from the
#: collapse rules, the BOS policy and settings recorded, and the measurements added since).
Schema = Literal["extended", "original"]
SCHEMA_EXTENDED: Final = "extended"
SCHEMA_ORIGINAL: Final = "original"
SCHEMAS: tuple[Schema, ...] = get_args(Schema)

#: Whether the forward ids start with the tokenizer's BOS: ``auto`` as the tokenizer itself
#: does for ``tokenizer(text)``, ``always`` (TransformerLens' ``prepend_bos``), ``never``.
BosPolicy = Literal["auto", "always", "never"]
BOS_AUTO: Final = "auto"
BOS_ALWAYS: Final = "always"
BOS_NEVER: Final = "never"
BOS_POLICIES: tuple[BosPolicy, ...] = get_args(BosPolicy)

#: transformer-lens = TransformerLens' TransformerBridge (3.9+ and 4.x);
#: hooked-transformer = TransformerLens 3.x HookedTransformer, as the original pipeline.
Backend = Literal["transformers", "transformer-lens", "hooked-transformer"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)

#: ``--device`` values (``cuda:N`` also); auto prefers cuda, then mps, then cpu.
DEVICES = ("auto", "cuda", "mps", "cpu")
#: ``--dtype`` values; ``auto`` is the device's policy (cuda fp16, Gemma bf16, mps fp16, cpu fp32).
DTYPES = ("auto", "float32", "float16", "bfloat16")
#: Other spellings ``--dtype`` accepts for them.
DTYPE_ALIASES = {
    "fp32": "float32",
    "float": "float32",
    "fp16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
}
HALF_DTYPES = ("float16", "bfloat16")

#: The files one prompt's run writes: ``output-<stem><suffix>`` (the original's names).
OUTPUT_PREFIX: Final = "output-"
OutputKind = Literal["json", "records", "pure", "heatmap", "residuals", "rawlens", "milestones"]
OUTPUT_SUFFIXES: dict[OutputKind, str] = {
    "json": ".json",
    "records": "-records.csv",
    "pure": "-pure-next-token.csv",
    "heatmap": "-lens.png",
    "residuals": "-residuals.safetensors",
    # The extended schema's sidecars (lenscheck.metrics.files).
    "rawlens": "-pure-next-token-rawlens.csv",
    "milestones": "-milestones.csv",
}

#: ``<golden stem>.obtained.json``: what a drifting run produced, written beside its golden.
OBTAINED_SUFFIX: Final = ".obtained.json"

#: Top-k pairs a records row lists at an ordinary position, and at a verbose one (the last
#: position or a key word): the CSVs always have TOP_K_VERBOSE (token, prob) column pairs.
TOP_K_RECORD: Final = 5
TOP_K_VERBOSE: Final = 20

#: The copy-collapse rule's defaults (--copy-threshold, --copy-margin): p(top-1) above the
#: threshold and that far above p(top-2). Here rather than in lenscheck.collapse so that the
#: option declarations, which every pytest session imports, need no tensor code.
DEFAULT_COPY_THRESHOLD: Final = 0.90
DEFAULT_COPY_MARGIN: Final = 0.05
