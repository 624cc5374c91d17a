"""Shared helpers for the lens pipeline / backend / CLI / runner / plot / determinism tests.

Import explicitly (``from tests._lens_fixtures import ...`` or ``from _lens_fixtures import``).

* :func:`embedded_run` / :func:`synthetic_run` memoize one lens run per (model, backend) in
  this process, so every test module that needs the embedded SmolLM2 run shares a single
  ~3 s (unloaded machine) computation instead of one per module or fixture definition.
* :class:`FakeBackend` is a model-free :class:`~lenscheck.backends.base.LensBackend`: a tiny
  torch "model" (real ``torch.nn.LayerNorm`` / ``RMSNorm`` modules, a real lm_head) whose
  own forward the lens must reproduce, with a word-level tokenizer.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _shared import reference_dir

from lenscheck.backends.base import run_each
from lenscheck.backends.tokens import CodecBacked

if TYPE_CHECKING:
    import torch

    from lenscheck.runner import ModelRun

__all__ = [
    "EMBEDDED_FILE_NAME",
    "FAKE_VOCAB",
    "ORIGINAL_DIAGNOSTIC_KEYS",
    "ORIGINAL_TOP_LEVEL_KEYS",
    "PUBLISHED_DIR",
    "SINGLE_THREAD_ENV",
    "FakeBackend",
    "FakeTokenizer",
    "embedded_run",
    "make_fake_backend",
    "single_thread",
    "synthetic_run",
    "write_run",
]

#: The files the original pipeline wrote (the schema's truth): the full published run (eight
#: models) where the shared folder exists, else the one-model copy in tests/data (_shared.py).
PUBLISHED_DIR = reference_dir()
EMBEDDED_FILE_NAME = "SmolLM2-135M-Instruct"

ORIGINAL_TOP_LEVEL_KEYS = [
    "prompt",
    "test_prompts",
    "temperature_exploration",
    "diagnostics",
    "final_prediction",
    "model_stats",
]
ORIGINAL_DIAGNOSTIC_KEYS = [
    "type",
    "model",
    "device",
    "use_norm_lens",
    "use_fp32_unembed",
    "unembed_dtype",
    "first_block_ln1_type",
    "final_ln_type",
    "layernorm_bias_fix",
    "norm_alignment_fix",
    "layer0_norm_fix",
    "mixed_precision_fix",
    "layer0_position_info",
    "context_prompt",
    "target_prediction",
    "L_copy",
    "L_copy_H",
    "L_semantic",
    "delta_layers",
]


# --------------------------------------------------------------------- real model runs

#: Environment for child processes: one intra-op thread, like :func:`single_thread`.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One torch intra-op thread inside the block (restored afterwards).

    Two reasons. Speed: the CI gate runs ``pytest -n 2`` on 2 cores, and two threads per
    worker oversubscribe them; measured on a loaded 2-core machine, a synthetic CLI run took
    5-13 s with 2 threads and 0.6-0.8 s with 1. Bytes: the model's own logits (probes,
    final prediction) differ in the last digits between 1 and 2 threads (the lens' CSVs do
    not), so runs compared byte for byte must use the same thread count.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def embedded_run(backend: str = "transformers", preset: str = "original") -> ModelRun:
    """The embedded SmolLM2 through ``backend`` on cpu/fp32 with one thread, once per
    process (no files). The original preset by default: these runs are checked against the
    original pipeline's published files."""
    from lenscheck.config import LensConfig
    from lenscheck.runner import run_model

    cfg = LensConfig(
        device="cpu",
        backend=backend,  # type: ignore[arg-type]
        heatmap=False,
        preset=preset,  # type: ignore[arg-type]
    )
    with single_thread():
        return run_model("embedded", cfg)


@functools.cache
def synthetic_run(alias: str, backend: str = "transformers", preset: str = "original") -> ModelRun:
    """A synthetic model through ``backend`` (one probe prompt only: the probes are not
    what these runs test, and each costs a forward), under the original preset as the
    behaviour spec (docs/design.md section 3) describes it."""
    from lenscheck.config import LensConfig
    from lenscheck.prompts import TEST_PROMPTS
    from lenscheck.runner import run_model

    cfg = LensConfig(
        device="cpu",
        backend=backend,  # type: ignore[arg-type]
        heatmap=False,
        test_prompts=TEST_PROMPTS[:1],
        preset=preset,  # type: ignore[arg-type]
    )
    with single_thread():
        return run_model(alias, cfg)


def write_run(run: ModelRun, out_dir: Path, *, heatmap: bool = False) -> dict[str, Path]:
    """Write ``run``'s files into ``out_dir`` through the runner's writer; their paths."""
    from lenscheck.artifacts import output_paths
    from lenscheck.config import LensConfig
    from lenscheck.runner import write_outputs

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(out_dir, run.resolved.name)
    write_outputs(run.result, paths, LensConfig(heatmap=heatmap), title=run.resolved.name)
    return {
        "json": paths.json,
        "records": paths.records_csv,
        "pure": paths.pure_csv,
        "heatmap": paths.heatmap,
    }


# --------------------------------------------------------------------- the fake backend

FAKE_VOCAB = (
    "<unk>",
    "<bos>",
    " Berlin",
    " Germany",
    " capital",
    " the",
    " of",
    " is",
    " called",
    " simply",
    " The",
    "Give",
    " city",
    " name",
    " only,",
    " plain",
    " text.",
    " Ber",
    " lin",
    " Paris",
    " France",
    " a",
    " word",
    " answer",
)


class FakeTokenizer:
    """Word-level tokenizer over :data:`FAKE_VOCAB` (unknown words -> ``<unk>``, id 0)."""

    bos_token_id = 1

    def __init__(self) -> None:
        self._ids = {w: i for i, w in enumerate(FAKE_VOCAB)}

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = [self._ids.get(w, 0) for w in re.findall(r" ?\S+", text)]
        if add_special_tokens:
            ids = [self.bos_token_id, *ids]
        return {"input_ids": ids}

    def decode(self, ids: list[int], clean_up_tokenization_spaces: bool = True) -> str:
        return "".join(FAKE_VOCAB[int(i)] for i in ids)


class FakeBackend(CodecBacked):
    """A :class:`LensBackend` around a tiny torch model with real norm modules.

    The "model" (``forward``): embeddings -> ``n_layers`` blocks ``x + tanh(ln1(x) @ A)``
    (pre-norm) or ``ln2(x + tanh(x @ A))`` (post-norm) -> ``ln_final`` (pre-norm only) ->
    ``lm_head``, every norm called through its own torch module. ``corrupt`` lets a test
    replace one residual after the forward (NaN/inf injection).
    """

    name = "fake"

    def __init__(
        self,
        *,
        architecture: str = "pre_norm",
        norm: str = "layernorm",
        n_layers: int = 3,
        d_model: int = 16,
        n_ctx: int = 64,
        weight_dtype: torch.dtype | None = None,
        promote: bool = True,
        softcap: float | None = None,
        seed: int = 0,
    ) -> None:
        import torch

        from lenscheck.backends.base import (
            BlockNorms,
            LayerStack,
            ModelFacts,
            Unembedder,
        )
        from lenscheck.backends.tokens import TokenCodec

        gen = torch.Generator().manual_seed(seed)
        vocab = len(FAKE_VOCAB)
        self.model_id = f"fake/{architecture}-{norm}"
        self.device = "cpu"
        self.dtype = torch.float32
        self.codec = TokenCodec(FakeTokenizer())
        self.bos_token_id = self.codec.bos_token_id
        self.corrupt: Callable[[list[torch.Tensor]], None] | None = None

        def make_norm() -> Any:
            if norm == "layernorm":
                mod: Any = torch.nn.LayerNorm(d_model, eps=1e-5)
                with torch.no_grad():
                    mod.weight.copy_(1 + 0.5 * torch.randn(d_model, generator=gen))
                    mod.bias.copy_(0.5 * torch.randn(d_model, generator=gen))
            else:
                mod = torch.nn.RMSNorm(d_model, eps=1e-6)
                with torch.no_grad():
                    mod.weight.copy_(1 + 0.5 * torch.randn(d_model, generator=gen))
            return mod.requires_grad_(False)

        self.embed = torch.randn(vocab, d_model, generator=gen) * 2.0
        self.mats = [torch.randn(d_model, d_model, generator=gen) for _ in range(n_layers)]
        blocks = [BlockNorms(make_norm(), make_norm()) for _ in range(n_layers)]
        ln_final = make_norm() if architecture == "pre_norm" else None
        self.stack = LayerStack(architecture=architecture, blocks=blocks, ln_final=ln_final)  # type: ignore[arg-type]
        w = torch.randn(vocab, d_model, generator=gen) * 1.5
        self.lm_weight = w if weight_dtype is None else w.to(weight_dtype)
        self.softcap = softcap
        self.unembed = Unembedder(
            weight=self.lm_weight, bias=None, softcap=softcap, promote=promote
        )
        self.facts = ModelFacts(
            num_layers=n_layers,
            d_model=d_model,
            n_heads=2,
            d_vocab=vocab,
            n_ctx=n_ctx,
            architecture=architecture,  # type: ignore[arg-type]
            model_class="FakeForCausalLM",
            has_pos_embed=False,
        )

    # --- the model's own computation (norm modules called as modules) ---
    def forward(self, ids: list[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        import torch

        x = self.embed[torch.tensor(ids)]
        residuals = [x]
        for block, mat in zip(self.stack.blocks, self.mats):
            if self.stack.architecture == "pre_norm":
                x = x + torch.tanh(block.ln1(x) @ mat)
            else:
                x = block.ln2(x + torch.tanh(x @ mat))
            residuals.append(x)
        final = self.stack.ln_final(x) if self.stack.ln_final is not None else x
        logits = final.to(self.lm_weight.dtype) @ self.lm_weight.T
        logits = logits.float()
        if self.softcap is not None:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return residuals, logits

    # --- LensBackend protocol (the tokenizer methods come from CodecBacked) ---
    def run(self, ids: list[int]) -> Any:
        from lenscheck.backends.base import Capture

        residuals, logits = self.forward(ids)
        residuals = [r.detach().clone() for r in residuals]
        if self.corrupt is not None:
            self.corrupt(residuals)
        return Capture(residuals=residuals, logits=logits.detach())

    def run_batch(self, batch: Sequence[list[int]]) -> list[Any]:
        return run_each(self.run, batch)

    def versions(self) -> dict[str, str]:
        return {"fake": "0"}


def make_fake_backend(**kwargs: Any) -> FakeBackend:
    """A :class:`FakeBackend` (keyword arguments as its constructor)."""
    return FakeBackend(**kwargs)
