"""Write the tuned-lens fixtures of tests/data/tuned/ with tuned-lens 0.2.0 itself.

    pip install tuned-lens==0.2.0 torch==2.13.0   # beside lenscheck and its models
    python tests/data/tuned/make_fixtures.py      # or: nox -s tunedlens -- --write-fixtures

For each synthetic family, ``tuned_lens.TunedLens.from_model`` builds the lens (one zero
translator per block, tuned-lens' own init), seeded random weights and biases replace the
zeros, and ``TunedLens.save`` writes ``<family>/config.json`` and ``<family>/params.pt``
(``base_model_name_or_path`` set to the lenscheck alias, the id lenscheck gives the model).
Beside them ``expected.json`` holds what tuned-lens' own forward gives on the default prompt,
for every layer and position: entropy in bits, the top-5 ids and their logits, and the
logsumexp; layers < L through ``TunedLens.forward(h, i)`` on the model's
``output_hidden_states``, the last layer the model's own logits (as tuned-lens'
``PredictionTrajectory`` does). tests/test_lenses_tuned.py checks lenscheck against these
values without tuned-lens installed.

tuned-lens 0.2.0 knows the final norm of GPT-2, Llama and GPT-NeoX models only
(``model_surgery.get_final_norm``): Gemma-3 raises NotImplementedError, and the post-norm
OPT has no final norm. For those two the same translators are saved through the same
``TunedLens.save`` from a lens whose ``Unembed`` holds the norm lenscheck decodes with (the
Gemma-3 norm, the last block's ``ln2``), and no expected values are written: tuned-lens has
no forward of its own for them.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # this checkout's lenscheck

from lenscheck.config import LensConfig  # noqa: E402
from lenscheck.norms import final_norm_module  # noqa: E402
from lenscheck.runner import load_model  # noqa: E402
from lenscheck.suites import DEFAULT_SUITE  # noqa: E402

#: family -> whether tuned-lens 0.2.0 has a forward of its own for it.
FAMILIES = {
    "synthetic-gpt2": True,
    "synthetic-llama": True,
    "synthetic-neox": True,
    "synthetic-gemma3": False,
    "synthetic-opt-postnorm": False,
}
SEED = 316
TOP = 5


def seeded_translators(lens: Any, seed: int) -> None:
    """W ~ N(0, 0.5^2 / d), b ~ N(0, 0.25^2): each layer moves its residual by about half
    its own size, differently per layer, and the bias matters on its own."""
    gen = torch.Generator().manual_seed(seed)
    for translator in lens.layer_translators:
        d = translator.weight.shape[0]
        with torch.no_grad():
            translator.weight.copy_(torch.randn(d, d, generator=gen) * (0.5 / math.sqrt(d)))
            translator.bias.copy_(torch.randn(d, generator=gen) * 0.25)


def hand_built_lens(model: Any, backend: Any) -> Any:
    """A tuned_lens.TunedLens for a model tuned-lens 0.2.0 cannot take apart itself."""
    from tuned_lens.nn.lenses import TunedLens, TunedLensConfig
    from tuned_lens.nn.unembed import Unembed

    unembed = Unembed.__new__(Unembed)
    torch.nn.Module.__init__(unembed)
    unembed.final_norm = final_norm_module(backend.stack)
    unembed.unembedding = model.get_output_embeddings()
    config = TunedLensConfig(
        base_model_name_or_path=model.config.name_or_path,
        d_model=model.config.hidden_size,
        num_hidden_layers=model.config.num_hidden_layers,
    )
    return TunedLens(unembed, config)


def cell(logits: torch.Tensor) -> dict[str, Any]:
    """What a fixture pins of one [V] logits row."""
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    entropy = float(-(log_probs.exp() * log_probs).sum() / math.log(2))
    top = torch.topk(logits, TOP)
    return {
        "entropy_bits": entropy,
        "top_ids": top.indices.tolist(),
        "top_logits": top.values.tolist(),
        "logsumexp": float(torch.logsumexp(logits.double(), dim=-1)),
    }


def expected_values(lens: Any, model: Any, ids: list[int]) -> list[list[dict[str, Any]]]:
    """[layer][position] cells from tuned-lens' own forward."""
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
        layers = [lens.forward(h, i)[0] for i, h in enumerate(out.hidden_states[:-1])]
        layers.append(out.logits[0].float())
    return [[cell(row) for row in layer] for layer in layers]


def tuned_lens_version() -> str:
    from importlib.metadata import version

    return version("tuned-lens")


def write_family(alias: str, native: bool, seed: int) -> None:
    from tuned_lens.nn.lenses import TunedLens

    _, backend = load_model(alias, LensConfig(device="cpu", dtype="float32"))
    model = backend.model
    lens = TunedLens.from_model(model) if native else hand_built_lens(model, backend)
    seeded_translators(lens, seed)
    lens.config.base_model_name_or_path = alias
    folder = HERE / alias.removeprefix("synthetic-")
    lens.save(folder)
    if not native:
        (folder / "expected.json").unlink(missing_ok=True)
        print(f"{alias}: {folder} (no expected values: tuned-lens has no forward for it)")
        return
    (case,) = DEFAULT_SUITE.cases
    ids = backend.encode(case.prompt)
    expected = {
        "written_by": {
            "tuned_lens": tuned_lens_version(),
            "torch": torch.__version__,
            "script": "tests/data/tuned/make_fixtures.py",
        },
        "model": alias,
        "prompt_id": case.id,
        "seed": seed,
        "input_ids": ids,
        "cells": expected_values(lens, model, ids),
    }
    text = json.dumps(expected, indent=1) + "\n"
    (folder / "expected.json").write_text(text, encoding="utf-8")
    print(f"{alias}: {folder}")


def main() -> None:
    if tuned_lens_version() != "0.2.0":
        sys.exit(f"expected tuned-lens 0.2.0, found {tuned_lens_version()}")
    torch.set_num_threads(1)
    for n, (alias, native) in enumerate(FAMILIES.items()):
        write_family(alias, native, SEED + n)


if __name__ == "__main__":
    main()
