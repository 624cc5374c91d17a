"""Plain transformers models: hooks on the decoder layers, never ``output_hidden_states``.

``hidden_states[-1]`` is already final-normed in many models, so the residuals come
from a pre-hook on the first decoder layer (embeddings, positions and any embedding
scale included) and a forward hook on every layer's output.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from lenscheck.backends.base import (
    BlockNorms,
    Capture,
    LayerStack,
    ModelFacts,
    Unembedder,
    batched_run,
    library_versions,
    right_pad,
    split_rows,
)
from lenscheck.backends.tokens import CodecBacked
from lenscheck.norms import UnsupportedNormError, lens_norm_modules

__all__ = [
    "HFStructure",
    "TransformersBackend",
    "find_structure",
    "load_hf_model",
    "load_tokenizer",
    "transformers_model",
]

log = logging.getLogger(__name__)

_LN1 = ("input_layernorm", "ln_1", "self_attn_layer_norm", "ln1")
_LN2 = ("post_attention_layernorm", "ln_2", "final_layer_norm", "ln2")
_FINAL = ("norm", "ln_f", "final_layer_norm", "final_layernorm")


@dataclass
class HFStructure:
    """Where a transformers model keeps its layers and norms."""

    layers: Any  # nn.ModuleList of decoder layers
    final_norm: Any
    post_norm: bool
    has_pos_embed: bool

    def stack(self) -> LayerStack:
        """The norms as a TransformerLens-shaped stack."""
        blocks = [
            BlockNorms(_first_attr(layer, _LN1), _first_attr(layer, _LN2)) for layer in self.layers
        ]
        return LayerStack(
            architecture="post_norm" if self.post_norm else "pre_norm",
            blocks=blocks,
            ln_final=self.final_norm,
        )


def _first_attr(obj: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def find_structure(model: Any) -> HFStructure:
    """Locate the decoder layers (the ModuleList with ``num_hidden_layers`` entries)."""
    n_layers = int(model.config.num_hidden_layers)
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.ModuleList)
            and len(module) == n_layers
            and name.endswith(("layers", ".h"))
        ):
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            cfg = model.config
            return HFStructure(
                layers=module,
                final_norm=_first_attr(parent, _FINAL),
                # OPT with do_layer_norm_before=False (OPT-350m) normalizes after each sublayer.
                post_norm=getattr(cfg, "do_layer_norm_before", True) is False,
                has_pos_embed=any(hasattr(parent, a) for a in ("wpe", "embed_positions")),
            )
    raise ValueError(
        f"{type(model).__name__}: found no ModuleList of {n_layers} decoder layers; "
        "lenscheck supports decoder-only causal LMs with a `layers` or `h` list"
    )


def load_hf_model(
    path: str,
    *,
    dtype: torch.dtype,
    device: str,
    trust_remote_code: bool,
    device_map: str | None = None,
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a local dir or hub id, in eval mode."""
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    except ValueError as exc:
        # transformers says "pass the argument `trust_remote_code=True`": name our flag instead.
        if trust_remote_code or "trust_remote_code" not in str(exc):
            raise
        raise ValueError(_remote_code_message(path)) from exc
    if device_map is None:
        model = model.to(device)
    model.eval()
    return model, tokenizer


# Tokenizers by the bytes they are built from. Loading one takes 0.15-0.3 s (transformers
# parses tokenizer.json twice), ten times a small model's weights; a pytest session that
# re-runs a released model, or a test suite of many short sessions, loads the same one again.
_TOKENIZERS: OrderedDict[str, Any] = OrderedDict()
_TOKENIZERS_KEPT = 4
_TOKENIZER_FILES = (
    "config.json",  # the tokenizer class may come from the model type
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
)


def load_tokenizer(path: str, *, trust_remote_code: bool) -> Any:
    """``AutoTokenizer.from_pretrained(path)``, reused while a local folder's tokenizer files
    are byte-identical. Each caller gets its own shallow copy (padding side, special tokens
    set on it stay its own); hub ids and remote-code tokenizers always load afresh."""
    key = None if trust_remote_code else _tokenizer_key(Path(path))
    if key is None:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        while len(_TOKENIZERS) > _TOKENIZERS_KEPT:
            _TOKENIZERS.popitem(last=False)
    _TOKENIZERS.move_to_end(key)
    return copy.copy(_TOKENIZERS[key])


def _tokenizer_key(folder: Path) -> str | None:
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for name in _TOKENIZER_FILES:
        file = folder / name
        digest.update(f"{name}\0".encode())
        if file.is_file():
            digest.update(file.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _remote_code_message(path: str) -> str:
    return (
        f"model {path!r} needs its own code to load (its config points transformers at "
        "modules inside the repository), and lenscheck runs no repository code unless asked: "
        "--trust-remote-code is off. Read that code; if you trust it, rerun with "
        "--trust-remote-code (pytest: --lens-trust-remote-code; Python: "
        "LensConfig(trust_remote_code=True))"
    )


def _check_norms_found(model: Any, stack: LayerStack) -> None:
    """Refuse a model whose norms the lens needs were not found: never decode raw residuals."""
    missing = [i for i, module in enumerate(lens_norm_modules(stack)) if module is None]
    if not missing:
        return
    if stack.architecture == "post_norm":
        expected = f"{'/'.join(_LN1)} on the first decoder layer and {'/'.join(_LN2)} on every one"
    else:
        expected = (
            f"{'/'.join(_LN1)} on each decoder layer and a final norm "
            f"({'/'.join(_FINAL)}) beside the layer list"
        )
    raise UnsupportedNormError(
        f"{type(model).__name__}: found no norm module for lens layer(s) "
        f"{', '.join(map(str, missing))} of 0..{len(stack.blocks)}; expected {expected}. "
        "lenscheck decodes each residual through the model's own norm and will not decode "
        "un-normalized residuals: try --backend transformer-lens, or teach "
        "lenscheck.backends.hf the module's attribute name"
    )


def model_facts(model: Any, structure: HFStructure) -> ModelFacts:
    """ModelFacts from a transformers config."""
    cfg = model.config
    head = model.get_output_embeddings()
    n_ctx = next(
        (
            getattr(cfg, a)
            for a in ("max_position_embeddings", "n_positions", "n_ctx")
            if getattr(cfg, a, None)
        ),
        0,
    )
    return ModelFacts(
        num_layers=int(cfg.num_hidden_layers),
        d_model=int(cfg.hidden_size),
        n_heads=int(cfg.num_attention_heads),
        d_vocab=int(head.weight.shape[0]),
        n_ctx=int(n_ctx),
        architecture="post_norm" if structure.post_norm else "pre_norm",
        model_class=type(model).__name__,
        has_pos_embed=structure.has_pos_embed,
    )


def unembedder_for(model: Any, promote: bool) -> Unembedder:
    """The model's lm_head, with the final-logit softcap where the config has one."""
    head = model.get_output_embeddings()
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return Unembedder(
        weight=head.weight,
        bias=getattr(head, "bias", None),
        softcap=None if softcap is None else float(softcap),
        promote=promote,
        module=head,
    )


class TransformersBackend(CodecBacked):
    """The lens through plain transformers."""

    name = "transformers"

    def __init__(
        self, model: Any, tokenizer: Any, *, model_id: str, device: str, promote_unembed: bool
    ) -> None:
        self.model = model
        self._identify(model, tokenizer, model_id, device)
        self.structure = find_structure(model)
        self.facts = model_facts(model, self.structure)
        self.stack = self.structure.stack()
        _check_norms_found(model, self.stack)
        self.unembed = unembedder_for(model, promote_unembed)

    def run(self, ids: list[int]) -> Capture:
        return self.run_batch([ids])[0]

    def run_batch(self, batch: Sequence[list[int]]) -> list[Capture]:
        return batched_run(self._forward, self.facts.d_vocab, batch)

    def _forward(self, batch: list[list[int]]) -> list[Capture]:
        """One right-padded forward pass (see :func:`right_pad`), hooked on every layer."""
        captured: list[torch.Tensor] = []

        def pre_hook(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            captured.append((args[0] if args else kwargs["hidden_states"]).detach())

        def post_hook(_m: Any, _args: Any, output: Any) -> None:
            captured.append((output[0] if isinstance(output, tuple) else output).detach())

        tokens, mask = right_pad(batch, self.model.device)
        layers = self.structure.layers
        handles = [layers[0].register_forward_pre_hook(pre_hook, with_kwargs=True)]
        try:
            handles += [layer.register_forward_hook(post_hook) for layer in layers]
            with torch.no_grad():
                logits = self.model(tokens, attention_mask=mask, use_cache=False).logits
        finally:
            for handle in handles:
                handle.remove()
        return split_rows(captured, logits, [len(ids) for ids in batch])

    def versions(self) -> dict[str, str]:
        return library_versions("torch", "transformers")


def transformers_model(backend: object) -> Any:
    """The ``transformers`` model under ``backend``, for checks that read the model itself
    (an independent lens, the checkpoint's own tokenizer) rather than lenscheck's wrapper."""
    if not isinstance(backend, TransformersBackend):
        raise TypeError(
            "expected lenscheck's transformers backend (--backend transformers, the default), "
            f"got {type(backend).__name__}: this check reads the transformers model itself"
        )
    return backend.model
