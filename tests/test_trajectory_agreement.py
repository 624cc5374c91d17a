"""benchmarks/trajectory_agreement.py (`nox -s tunedlens`): its own logic, offline.

The comparison with tuned-lens' PredictionTrajectory needs tuned-lens and the embedded
model, so it runs in the nox session; here: the answer id it derives independently of
lenscheck, and that its comparison counts what differs instead of passing everything.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def script() -> Iterator[Any]:
    sys.path.insert(0, str(BENCHMARKS))  # it imports its sibling tunedlens_agreement
    spec = importlib.util.spec_from_file_location(
        "lenscheck_trajectory", BENCHMARKS / "trajectory_agreement.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(BENCHMARKS))


class _WordTokenizer:
    """One id per whitespace-separated word, a leading space part of the word ('Ġ' style)."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        words, start = [], 0
        for n, ch in enumerate(text + " "):
            if ch == " " and n > start:
                words.append(text[start:n])
                start = n
        ids = [self.vocab.setdefault(w, len(self.vocab)) for w in words if w]
        return {"input_ids": ids}


def test_the_answer_id_is_the_spaced_answer_beyond_the_prompt(script: Any) -> None:
    tok = _WordTokenizer()
    base = tok("The capital is", add_special_tokens=False)["input_ids"]
    a = script.answer_id(tok, "The capital is", "Berlin")
    assert a not in base and a == tok.vocab[" Berlin"]


def test_an_answer_that_does_not_extend_the_prompt_is_refused(script: Any) -> None:
    class Shrinks(_WordTokenizer):
        def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
            return {"input_ids": [len(text) % 7]}

    with pytest.raises(ValueError, match="does not extend the ids of prompt"):
        script.answer_id(Shrinks(), "The capital is", "Berlin")


def _theirs(layers: int) -> dict[str, Any]:
    return {
        "top1": np.arange(layers),
        "rank": np.ones(layers, dtype=int),
        "entropy_bits": np.full(layers, 2.0, dtype=np.float32),
        "kl_bits": np.linspace(3.0, 0.0, layers, dtype=np.float32),
    }


def _ours(theirs: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pure = [
        {"entropy_bits": float(h), "kl_to_final_bits": float(k), "answer_rank": int(r)}
        for h, k, r in zip(theirs["entropy_bits"], theirs["kl_bits"], theirs["rank"])
    ]
    return pure, [{"top1_token_id_norm": int(t)} for t in theirs["top1"]]


def test_identical_trajectories_agree_everywhere(script: Any) -> None:
    theirs = _theirs(4)
    row = script.compare(_ours(theirs), theirs)
    assert row == {
        "layers": 4,
        "top1_agree": 4,
        "rank_agree": 4,
        "max_dH_bits": 0.0,
        "max_dKL_bits": 0.0,
        "max_KL_bits": 3.0,
    }


def test_each_kind_of_difference_is_counted(script: Any) -> None:
    theirs = _theirs(4)
    pure, rawlens = _ours(theirs)
    rawlens[2]["top1_token_id_norm"] = 99
    pure[1]["answer_rank"] = 2
    pure[3]["entropy_bits"] += 0.25
    pure[0]["kl_to_final_bits"] -= 0.5
    row = script.compare((pure, rawlens), theirs)
    assert (row["top1_agree"], row["rank_agree"]) == (3, 3)
    assert row["max_dH_bits"] == pytest.approx(0.25) and row["max_dKL_bits"] == pytest.approx(0.5)


def test_a_layer_count_mismatch_stops_the_comparison(script: Any) -> None:
    theirs = _theirs(4)
    pure, rawlens = _ours(theirs)
    with pytest.raises(SystemExit, match="layers: lenscheck 3/4 vs tuned-lens 4"):
        script.compare((pure[:3], rawlens), theirs)
