"""The pipeline: residuals -> the model's own norms -> unembedding -> records.

Vectorized: every layer and position is unembedded in one matmul, entropy and
top-k are computed in batch, and each distinct token id is decoded once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lenscheck.collapse import ENTROPY_COLLAPSE_BITS, collapse_flags, summarize_collapse
from lenscheck.config import LensConfig
from lenscheck.norms import apply_norm_or_skip, lens_norm_modules, norm_spec
from lenscheck.numerics import entropy_bits, kl_bits, topk_probs
from lenscheck.prompts import TARGET_PREDICTION, is_verbose_position

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import LensBackend

__all__ = [
    "NEXT_TOKEN",
    "LensResult",
    "LensStats",
    "NonFiniteResidualError",
    "lens_logits",
    "lens_stats",
    "normalized_residuals",
    "run_lens",
]

log = logging.getLogger(__name__)
NEXT_TOKEN = "⟨NEXT⟩"
_TEST_TOP_K, _TEMP_TOP_K, _FINAL_TOP_K, _PURE_TOP_K = 10, 15, 20, 5


class NonFiniteResidualError(FloatingPointError):
    """A residual holds NaN or inf (in practice: fp16 overflow)."""


@dataclass
class LensResult:
    """Everything one lens run produced; ``json_data`` is what the JSON file holds."""

    json_data: dict[str, Any]
    records: list[dict[str, Any]]
    pure_records: list[dict[str, Any]]
    input_ids: list[int]
    entropies: torch.Tensor  # [L+1, T] bits
    top1_ids: torch.Tensor  # [L+1, T]
    residuals: list[torch.Tensor] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def diagnostics(self) -> dict[str, Any]:
        """The JSON's diagnostics block."""
        return self.json_data["diagnostics"]  # type: ignore[no-any-return,unused-ignore]


def _check_finite(residuals: list[torch.Tensor]) -> None:
    import torch

    for layer, resid in enumerate(residuals):
        if not bool(torch.isfinite(resid).all()):
            kind = "NaN" if bool(torch.isnan(resid).any()) else "inf"
            raise NonFiniteResidualError(
                f"residual at lens layer {layer} contains {kind} (dtype {resid.dtype}); fp16 "
                "overflow is the usual cause: rerun with --dtype bfloat16 or float32 "
                "(pytest: --lens-dtype)"
            )


def normalized_residuals(backend: LensBackend, residuals: list[torch.Tensor]) -> torch.Tensor:
    """Each layer's residual through the norm the model applies to it: [L+1, T, d]."""
    import torch

    norms = lens_norm_modules(backend.stack)
    return torch.stack([apply_norm_or_skip(r, m) for r, m in zip(residuals, norms)])


def lens_logits(backend: LensBackend, residuals: list[torch.Tensor]) -> torch.Tensor:
    """The lens' fp32 logits for every layer and position at once: [L+1, T, V]."""
    return backend.unembed(normalized_residuals(backend, residuals))


@dataclass
class LensStats:
    """Per layer and position: entropy, top-k; plus the rows later checks need."""

    entropy: torch.Tensor  # [L+1, T]
    top_ids: torch.Tensor  # [L+1, T, k]
    top_probs: torch.Tensor  # [L+1, T, k]
    last_layer: torch.Tensor  # [T, V] lens logits at the last layer
    next_token: torch.Tensor  # [L+1, V] lens logits at the last position


def lens_stats(
    backend: LensBackend, residuals: list[torch.Tensor], k: int, layers_per_chunk: int = 8
) -> LensStats:
    """Unembed a few layers at a time (batched matmul) and reduce each chunk at once.

    Chunking bounds the peak memory to a few [chunk, T, V] fp32 buffers instead of
    several [L+1, T, V] ones, at the same arithmetic cost.
    """
    import torch

    normed = normalized_residuals(backend, residuals)
    ent, ids, probs, nxt = [], [], [], []
    for start in range(0, normed.shape[0], layers_per_chunk):
        logits = backend.unembed(normed[start : start + layers_per_chunk])
        ent.append(entropy_bits(logits))
        top = topk_probs(logits, k)
        ids.append(top.ids)
        probs.append(top.probs)
        nxt.append(logits[:, -1].clone())
    return LensStats(
        entropy=torch.cat(ent),
        top_ids=torch.cat(ids),
        top_probs=torch.cat(probs),
        last_layer=logits[-1].clone(),  # the last chunk's (there is always one: L+1 >= 1)
        next_token=torch.cat(nxt),
    )


def _topk_pairs(backend: LensBackend, ids: list[int], probs: list[float]) -> list[list[Any]]:
    return [[backend.decode(i), p] for i, p in zip(ids, probs)]


def _distribution(
    backend: LensBackend, logits: torch.Tensor, k: int
) -> tuple[float, list[list[Any]]]:
    top = topk_probs(logits, k)
    ent = float(entropy_bits(logits).item())
    return ent, _topk_pairs(backend, top.ids.tolist(), top.probs.tolist())


def _records(
    backend: LensBackend,
    cfg: LensConfig,
    ids: list[int],
    ent: torch.Tensor,
    top_ids: list[list[list[int]]],
    top_p: list[list[list[float]]],
) -> list[dict[str, Any]]:
    labels = [backend.token_text(i) for i in ids]
    ent_list = ent.tolist()
    ks = [
        cfg.top_k_verbose if is_verbose_position(pos, labels[pos], len(ids)) else cfg.top_k_record
        for pos in range(len(ids))
    ]
    out = []
    for layer, (layer_ids, layer_p) in enumerate(zip(top_ids, top_p)):
        for pos, k in enumerate(ks):
            out.append(
                {
                    "type": "record",
                    "layer": layer,
                    "pos": pos,
                    "token": labels[pos],
                    "entropy": ent_list[layer][pos],
                    "topk": _topk_pairs(backend, layer_ids[pos][:k], layer_p[pos][:k]),
                }
            )
    return out


def _pure_records(
    backend: LensBackend,
    cfg: LensConfig,
    prompt_ids: set[int],
    ent: torch.Tensor,
    top_ids: list[list[list[int]]],
    top_p: list[list[list[float]]],
) -> list[dict[str, Any]]:
    from lenscheck.collapse import is_semantic_top1

    out = []
    last = len(top_ids[0]) - 1
    for layer, (layer_ids, layer_p) in enumerate(zip(top_ids, top_p)):
        ids, probs = layer_ids[last], layer_p[last]
        e = float(ent[layer, last].item())
        pairs = _topk_pairs(backend, ids[:_PURE_TOP_K], probs[:_PURE_TOP_K])
        out.append(
            {
                "type": "pure_next_token_record",
                "layer": layer,
                "pos": last,
                "token": NEXT_TOKEN,
                "entropy": e,
                "topk": pairs,
                "copy_collapse": collapse_flags(
                    ids[0],
                    probs[0],
                    probs[1],
                    e,
                    prompt_ids,
                    copy_threshold=cfg.copy_threshold,
                    copy_margin=cfg.copy_margin,
                ),
                "entropy_collapse": e <= ENTROPY_COLLAPSE_BITS,
                "is_answer": is_semantic_top1(pairs[0][0], cfg.ground_truth),
            }
        )
    return out


def _consistency(lens_last: torch.Tensor, model_logits: torch.Tensor) -> dict[str, Any]:
    kl = kl_bits(model_logits, lens_last)
    agree = bool((lens_last.argmax(-1) == model_logits.argmax(-1)).all())
    return {"kl_bits_last_pos": float(kl[-1]), "kl_bits_max": float(kl.max()), "top1_agree": agree}


def _norm_names(backend: LensBackend) -> tuple[str | None, str | None]:
    def name(module: Any) -> str | None:
        return None if module is None else norm_spec(module).class_name

    first = backend.stack.blocks[0].ln1 if backend.stack.blocks else None
    return name(first), name(backend.stack.ln_final)


def _diagnostics(backend: LensBackend, cfg: LensConfig) -> dict[str, Any]:
    first, final = _norm_names(backend)
    kind0 = norm_spec(backend.stack.blocks[0].ln1).kind if first else None
    ln2 = backend.stack.blocks[0].ln2 if backend.stack.blocks else None
    ln2_kind = norm_spec(ln2).kind if ln2 is not None else None
    return {
        "type": "diagnostics",
        "model": backend.model_id,
        "device": backend.device,
        "use_norm_lens": True,
        "use_fp32_unembed": str(backend.dtype) == "torch.float32",
        "unembed_dtype": str(backend.unembed.dtype),
        "first_block_ln1_type": first,
        "final_ln_type": final,
        "layernorm_bias_fix": "active" if kind0 == "layernorm" else "not_needed_rms_model",
        "norm_alignment_fix": (
            "fallback_to_ln1"
            if ln2_kind is None
            else f"using_ln2_{'layernorm' if ln2_kind == 'layernorm' else 'rmsnorm'}_for_post_block"
        ),
        "layer0_norm_fix": "using_real_ln1_on_embeddings",
        "mixed_precision_fix": "casting_to_fp32_before_unembed",
        "layer0_position_info": (
            "additive_pos_embed_included"
            if backend.facts.has_pos_embed
            else "token_only_rotary_model"
        ),
        "context_prompt": cfg.prompt,
        "target_prediction": TARGET_PREDICTION,
    }


def _check_prompt(backend: LensBackend, cfg: LensConfig, ids: list[int]) -> dict[str, Any]:
    n_ctx = backend.facts.n_ctx
    if n_ctx and len(ids) > n_ctx:
        raise ValueError(
            f"prompt is {len(ids)} tokens long but {backend.model_id} has a context of {n_ctx} "
            "tokens; shorten the prompt"
        )
    pieces = backend.prompt_ids(" " + cfg.ground_truth.strip())
    if len(pieces) != 1:
        log.warning(
            "ground truth %r tokenizes to %d pieces; is_answer compares the top-1 text "
            "with the whole string",
            cfg.ground_truth,
            len(pieces),
        )
    return {"ground_truth_token_ids": pieces, "ground_truth_single_token": len(pieces) == 1}


def _probes(backend: LensBackend, cfg: LensConfig, final_logits: torch.Tensor) -> dict[str, Any]:
    tests = []
    batch = [backend.encode(prompt) for prompt in cfg.test_prompts]
    rows = list(backend.next_token_logits_batch(batch)) if batch else []
    if len(rows) != len(batch):
        raise RuntimeError(
            f"backend {backend.name!r} returned {len(rows)} next-token distributions for "
            f"{len(batch)} probe prompts; expected one per prompt"
        )
    for prompt, row in zip(cfg.test_prompts, rows):
        ent, topk = _distribution(backend, row, _TEST_TOP_K)
        tests.append({"type": "test_prompt", "prompt": prompt, "entropy": ent, "topk": topk})
    temps = []
    from lenscheck.prompts import TEMPERATURES

    for temp in TEMPERATURES:
        ent, topk = _distribution(backend, (final_logits / temp).float(), _TEMP_TOP_K)
        temps.append(
            {"type": "temperature_exploration", "temperature": temp, "entropy": ent, "topk": topk}
        )
    ent, topk = _distribution(backend, final_logits, _FINAL_TOP_K)
    final = {"type": "final_prediction", "entropy": ent, "topk": topk}
    return {"test_prompts": tests, "temperature_exploration": temps, "final_prediction": final}


def run_lens(backend: LensBackend, cfg: LensConfig) -> LensResult:
    """Run the logit lens on ``cfg.prompt`` and build every record of the output files."""
    import torch

    with torch.no_grad():
        return _run_lens(backend, cfg)


def _run_lens(backend: LensBackend, cfg: LensConfig) -> LensResult:
    ids = backend.encode(cfg.prompt)
    gt_facts = _check_prompt(backend, cfg, ids)
    capture = backend.run(ids)
    _check_finite(capture.residuals)
    stats = lens_stats(backend, capture.residuals, cfg.top_k_verbose)
    ent = stats.entropy
    top_ids, top_p = stats.top_ids.tolist(), stats.top_probs.tolist()
    records = _records(backend, cfg, ids, ent, top_ids, top_p)
    pure = _pure_records(backend, cfg, set(backend.prompt_ids(cfg.prompt)), ent, top_ids, top_p)
    diag = _diagnostics(backend, cfg)
    diag.update(summarize_collapse(pure))
    diag.update(_extra_diagnostics(backend, cfg, ids, gt_facts, stats.last_layer, capture.logits))
    probes = _probes(backend, cfg, capture.logits[-1])
    model_stats = {
        "type": "model_stats",
        "num_layers": backend.facts.num_layers,
        "d_model": backend.facts.d_model,
        "n_heads": backend.facts.n_heads,
        "d_vocab": backend.facts.d_vocab,
        "n_ctx": backend.facts.n_ctx,
        "architecture": backend.facts.architecture,
    }
    json_data = {
        "prompt": {
            "type": "prompt",
            "context_prompt": cfg.prompt,
            "ground_truth": cfg.ground_truth,
        },
        "test_prompts": probes["test_prompts"],
        "temperature_exploration": probes["temperature_exploration"],
        "diagnostics": diag,
        "final_prediction": probes["final_prediction"],
        "model_stats": model_stats,
    }
    return LensResult(
        json_data=json_data,
        records=records,
        pure_records=pure,
        input_ids=ids,
        entropies=ent,
        top1_ids=stats.top_ids[..., 0],
        residuals=capture.residuals if cfg.keep_residuals else None,
        extras={
            "lens_logits_last": stats.last_layer,
            "model_logits": capture.logits,
            "p_ground_truth": _p_answer(stats.next_token, gt_facts),
        },
    )


def _p_answer(next_token: torch.Tensor, gt_facts: dict[str, Any]) -> list[float]:
    """Per layer, the next-token probability of the ground truth's first piece."""
    import torch

    pieces = gt_facts["ground_truth_token_ids"]
    if not pieces:
        return [0.0] * next_token.shape[0]
    return torch.softmax(next_token.float(), dim=-1)[:, pieces[0]].tolist()  # type: ignore[no-any-return,unused-ignore]


def _extra_diagnostics(
    backend: LensBackend,
    cfg: LensConfig,
    ids: list[int],
    gt_facts: dict[str, Any],
    lens_last: torch.Tensor,
    model_logits: torch.Tensor,
) -> dict[str, Any]:
    from lenscheck import __version__

    return {
        "last_layer_consistency": _consistency(lens_last, model_logits),
        "backend": backend.name,
        "model_source": cfg.model_source,
        "versions": {"lenscheck": __version__, **backend.versions()},
        "compute_dtype": str(backend.dtype),
        "architecture": backend.facts.architecture,
        "model_class": backend.facts.model_class,
        "tokenization": {
            "prepend_bos": backend.bos_token_id is not None,
            "n_tokens": len(ids),
            "input_ids": ids,
        },
        "copy_threshold": cfg.copy_threshold,
        "copy_margin": cfg.copy_margin,
        **gt_facts,
    }
