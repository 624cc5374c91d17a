"""The plugin's rule that holds the extended files' answer ranks and probabilities to the
JSON's decoding-point ablation (lenscheck.plugin.measures), in isolation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from lenscheck.plugin.measures import _ablation_rules, _Problems


def _files(first_id: int, *, lens: str = "logit", raw_rank: int = 7) -> Any:
    block = {
        "final": {"answer_rank": [3, 1], "p_answer": [0.1, 0.6]},
        "raw": {"answer_rank": [9, 7], "p_answer": [0.01, 0.02]},
    }
    diag: dict[str, Any] = {
        "decoding_ablation": block,
        "ground_truth_token_ids": [5, 6],
        "answer_first_id": first_id,
        "decode_norm": "final",
    }
    if lens != "logit":
        diag["lens"] = {"kind": lens}
    rows = [
        {"answer_rank_raw": 9, "p_answer_raw": 0.01},
        {"answer_rank_raw": raw_rank, "p_answer_raw": 0.02},
    ]
    return SimpleNamespace(json={"diagnostics": diag}, rawlens=SimpleNamespace(rows=rows))


def _problems(files: Any, ranks: list[int], probs: list[float]) -> list[str]:
    out = _Problems()
    _ablation_rules("p", files, {"answer_rank": ranks, "p_answer": probs}, out)
    return list(out)


def test_equal_ranks_and_probabilities_pass() -> None:
    assert _problems(_files(5), [3, 1], [0.1, 0.6 + 5e-6]) == []


def test_a_rank_off_by_one_and_a_moved_probability_are_named() -> None:
    problems = _problems(_files(5, raw_rank=8), [4, 1], [0.1, 0.61])
    assert problems == [
        "p: layer 0: answer_rank written 4, the decoding-point ablation's (final) 3",
        "p: layer 1: p_answer written 0.61, the definition gives 0.6",
        "p: layer 1: answer_rank_raw written 8, the decoding-point ablation's (raw) 7",
    ]


def test_another_answer_id_or_another_lens_is_not_compared_where_it_differs() -> None:
    # The ablation reads the answer tokenized alone (id 5); the extended files the first id
    # of prompt + answer: where they differ the ranks are of different tokens.
    assert _problems(_files(6, raw_rank=8), [4, 2], [0.5, 0.5]) == []
    # A tuned lens' own ranks are not the logit lens': only the raw lens' are compared.
    tuned = _problems(_files(5, lens="tuned", raw_rank=8), [4, 2], [0.5, 0.5])
    assert tuned == ["p: layer 1: answer_rank_raw written 8, the decoding-point ablation's (raw) 7"]
