"""lenscheck.collapse: copy-collapse (threshold, margin, entropy fallback), semantic top-1."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

from lenscheck.collapse import (
    DEFAULT_COPY_MARGIN,
    DEFAULT_COPY_THRESHOLD,
    collapse_flags,
    detect_copy_collapse,
    is_semantic_top1,
    summarize_collapse,
)
from lenscheck.strategies import finite_logits

pytestmark = pytest.mark.usefixtures("torch_single_thread")

unit = st.floats(0.0, 1.0)
maybe_entropy = st.none() | st.floats(0.0, 4.0)
maybe_fallback = st.none() | st.floats(0.0, 2.0)


@st.composite
def collapse_inputs(draw: st.DrawFn) -> tuple[torch.Tensor, list[int]]:
    """Logits (often peaked, so echo collapse happens) and prompt ids that often hold the
    top-1 id."""
    logits = draw(finite_logits(min_vocab=2, max_vocab=64))
    vocab = logits.shape[-1]
    ids = draw(st.lists(st.integers(0, vocab - 1), max_size=8))
    if draw(st.booleans()):
        ids.append(int(torch.argmax(logits)))
    return logits, ids


def logits_with_top2(p1: float, p2: float, vocab: int = 6) -> torch.Tensor:
    """Logits whose softmax puts p1 on id 0, p2 on id 1 and spreads the rest evenly."""
    rest = (1.0 - p1 - p2) / (vocab - 2)
    return torch.tensor([math.log(p1), math.log(p2)] + [math.log(rest)] * (vocab - 2))


# ---------------------------------------------------------------------------- properties


@given(inputs=collapse_inputs(), t=unit, m=unit, h=maybe_entropy, fb=maybe_fallback)
def test_collapse_matches_the_rule_computed_independently(
    inputs: tuple[torch.Tensor, list[int]],
    t: float,
    m: float,
    h: float | None,
    fb: float | None,
) -> None:
    logits, ids = inputs
    got = detect_copy_collapse(
        logits, ids, copy_threshold=t, copy_margin=m, entropy_bits=h, entropy_fallback_threshold=fb
    )
    probs = torch.softmax(logits.double(), -1)
    p_sorted, order = torch.sort(probs, descending=True)
    p1, p2 = float(p_sorted[0]), float(p_sorted[1])
    # Within 1e-6 of a boundary the fp32 lens and the fp64 reference may disagree.
    if abs(p1 - t) < 1e-6 or abs(p1 - p2 - m) < 1e-6:
        return
    top1_unique = p1 > p2
    echo = top1_unique and int(order[0]) in ids and p1 > t and p1 - p2 > m
    fallback = h is not None and fb is not None and h < fb
    event(f"echo={echo} fallback={fallback}")
    assert got is (echo or fallback)


@given(inputs=collapse_inputs(), t1=unit, t2=unit, m=unit, h=maybe_entropy)
def test_raising_the_threshold_never_creates_collapse(
    inputs: tuple[torch.Tensor, list[int]], t1: float, t2: float, m: float, h: float | None
) -> None:
    logits, ids = inputs
    lo, hi = sorted((t1, t2))
    at_lo = detect_copy_collapse(logits, ids, copy_threshold=lo, copy_margin=m, entropy_bits=h)
    at_hi = detect_copy_collapse(logits, ids, copy_threshold=hi, copy_margin=m, entropy_bits=h)
    event(f"low={at_lo} high={at_hi}")
    assert at_lo or not at_hi  # at_hi implies at_lo


@given(inputs=collapse_inputs(), t=unit, m1=unit, m2=unit, h=maybe_entropy)
def test_raising_the_margin_never_creates_collapse(
    inputs: tuple[torch.Tensor, list[int]], t: float, m1: float, m2: float, h: float | None
) -> None:
    logits, ids = inputs
    lo, hi = sorted((m1, m2))
    at_lo = detect_copy_collapse(logits, ids, copy_threshold=t, copy_margin=lo, entropy_bits=h)
    at_hi = detect_copy_collapse(logits, ids, copy_threshold=t, copy_margin=hi, entropy_bits=h)
    event(f"low={at_lo} high={at_hi}")
    assert at_lo or not at_hi


# ---------------------------------------------------------------------------------- units


def test_defaults_are_the_original_pipelines() -> None:
    assert (DEFAULT_COPY_THRESHOLD, DEFAULT_COPY_MARGIN) == (0.90, 0.05)


@pytest.mark.parametrize(
    ("p1", "p2", "threshold", "margin", "expected"),
    [
        (0.95, 0.01, 0.90, 0.05, True),  # clear echo
        (0.95, 0.01, 0.96, 0.05, False),  # p1 not above the threshold
        (0.93, 0.02, 0.90, 0.95, False),  # gap 0.91 not above the margin
        (0.93, 0.02, 0.90, 0.90, True),  # gap 0.91 above a 0.90 margin
        (0.50, 0.45, 0.40, 0.10, False),  # above threshold but top-2 too close
        (0.50, 0.45, 0.40, 0.01, True),
        (0.95, 0.01, 0.0, 0.0, True),  # zero threshold and margin: any strict echo
        (0.95, 0.01, 1.0, 0.0, False),  # p1 can never exceed 1
    ],
)
def test_threshold_and_margin(
    p1: float, p2: float, threshold: float, margin: float, expected: bool
) -> None:
    logits = logits_with_top2(p1, p2)
    got = detect_copy_collapse(
        logits,
        [0, 3],
        copy_threshold=threshold,
        copy_margin=margin,
        entropy_fallback_threshold=None,
    )
    assert got is expected


def test_copy_rule_is_strict_at_threshold_and_margin() -> None:
    """Dyadic values: the boundary cases are exact in binary, so ``>`` vs ``>=`` shows."""

    def flag(p1: float, p2: float) -> bool:
        return collapse_flags(7, p1, p2, None, [7], copy_threshold=0.75, copy_margin=0.5)

    assert flag(0.875, 0.25) is True  # p1 > 0.75 and p1 - p2 = 0.625 > 0.5
    assert flag(0.75, 0.0) is False  # p1 == threshold: not above it
    assert flag(0.8125, 0.3125) is False  # p1 - p2 == margin exactly: not above it


def test_top1_must_be_a_prompt_token() -> None:
    logits = logits_with_top2(0.99, 0.002)
    kwargs = {"copy_threshold": 0.9, "copy_margin": 0.05}
    assert detect_copy_collapse(logits, [0], **kwargs) is True
    assert detect_copy_collapse(logits, [1, 2, 3, 4, 5], **kwargs) is False
    assert detect_copy_collapse(logits, [], **kwargs) is False


@pytest.mark.parametrize(
    "ids",
    [
        [4, 0, 0, 4],  # duplicates
        (0,),
        {0, 9},
        frozenset({0}),
        (i for i in (7, 0)),  # a one-shot iterator
        torch.tensor([3, 0]),  # straight from a tokenizer's return_tensors="pt"
        np.array([0, 2], dtype=np.int64),
        [np.int64(0)],
    ],
    ids=["dupes", "tuple", "set", "frozenset", "generator", "tensor", "ndarray", "np-int"],
)
def test_prompt_ids_in_any_container(ids: Iterable[int]) -> None:
    logits = logits_with_top2(0.97, 0.01)
    assert detect_copy_collapse(logits, ids, copy_threshold=0.9, copy_margin=0.05) is True


def test_entropy_fallback_toggle() -> None:
    logits = logits_with_top2(0.5, 0.3)  # no echo: p1 below threshold
    kw = {"copy_threshold": 0.9, "copy_margin": 0.05}
    assert detect_copy_collapse(logits, [0], **kw) is False  # no entropy given
    assert detect_copy_collapse(logits, [0], entropy_bits=0.5, **kw) is True  # < 1 bit
    assert detect_copy_collapse(logits, [0], entropy_bits=1.0, **kw) is False  # strict <
    assert (
        detect_copy_collapse(logits, [0], entropy_bits=0.5, entropy_fallback_threshold=None, **kw)
        is False
    )  # fallback off
    assert (
        detect_copy_collapse(logits, [0], entropy_bits=1.5, entropy_fallback_threshold=2.0, **kw)
        is True
    )
    # the fallback fires whatever the prompt ids are
    assert detect_copy_collapse(logits, [], entropy_bits=0.0, **kw) is True


@pytest.mark.parametrize("name", ["copy_threshold", "copy_margin"])
@pytest.mark.parametrize("value", [-0.01, 1.01, 2.0, float("nan"), float("inf"), 1.5, -0.5])
def test_unit_interval_arguments(name: str, value: float) -> None:
    kwargs = {"copy_threshold": 0.9, "copy_margin": 0.05, name: value}
    with pytest.raises(ValueError) as info:
        detect_copy_collapse(torch.tensor([3.0, 0.0]), [0], **kwargs)
    assert str(info.value) == f"{name} must be in [0, 1], got {value!r}"


@pytest.mark.parametrize("name", ["copy_threshold", "copy_margin"])
@pytest.mark.parametrize("value", [True, "0.9", None])
def test_non_numeric_arguments(name: str, value: object) -> None:
    kwargs = {"copy_threshold": 0.9, "copy_margin": 0.05, name: value}
    with pytest.raises(TypeError, match=name):
        detect_copy_collapse(torch.zeros(4), [0], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("logits", "message"),
    [
        (
            torch.zeros(2, 4),
            "logits must be a 1-D tensor with >= 2 entries, got Tensor of shape (2, 4) and "
            "dtype torch.float32",
        ),
        (
            torch.zeros(1),
            "logits must be a 1-D tensor with >= 2 entries, got Tensor of shape (1,) and "
            "dtype torch.float32",
        ),
        (
            [0.1, 0.2],
            "logits must be a 1-D tensor with >= 2 entries, got [0.1, 0.2] (list)",
        ),
        (
            torch.tensor([0.0, float("nan")]),
            "logits contains NaN; expected finite values or -inf for masked ids",
        ),
        (
            torch.tensor([0.0, float("inf")]),
            "logits contains +inf; expected finite values or -inf for masked ids",
        ),
    ],
    ids=["2-D", "one-entry", "list", "nan", "inf"],
)
def test_invalid_logits(logits: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError) as info:
        detect_copy_collapse(logits, [0], copy_threshold=0.9, copy_margin=0.05)
    assert str(info.value) == message


def test_neg_inf_masked_logits() -> None:
    logits = torch.tensor([5.0, float("-inf"), float("-inf"), 0.0])
    # p1 = 0.9933, p2 = 0.0067
    assert detect_copy_collapse(logits, [0], copy_threshold=0.99, copy_margin=0.98) is True
    assert detect_copy_collapse(logits, [0], copy_threshold=0.995, copy_margin=0.0) is False


@pytest.mark.parametrize(
    ("text", "truth", "expected"),
    [
        ("Berlin", "Berlin", True),
        (" Berlin", "Berlin", True),
        ("Berlin\n", "Berlin", True),
        ("\tBerlin  ", " Berlin ", True),
        ("\u00a0Berlin", "Berlin", True),  # non-breaking space is whitespace too
        ("berlin", "Berlin", False),  # case matters
        ("Berl", "Berlin", False),
        ("Berlin.", "Berlin", False),
        ("ĠBerlin", "Berlin", False),  # undecoded byte-level piece is not the answer
        (" Ber lin", "Berlin", False),
        ("", "Berlin", False),
    ],
)
def test_semantic_top1_compares_trimmed_text(text: str, truth: str, expected: bool) -> None:
    assert is_semantic_top1(text, truth) is expected


def test_summary_first_layers_and_delta() -> None:
    recs = [
        {"layer": 0, "copy_collapse": False, "entropy_collapse": False, "is_answer": False},
        {"layer": 1, "copy_collapse": True, "entropy_collapse": False, "is_answer": False},
        {"layer": 2, "copy_collapse": True, "entropy_collapse": True, "is_answer": False},
        {"layer": 3, "copy_collapse": False, "entropy_collapse": True, "is_answer": True},
        {"layer": 4, "copy_collapse": False, "entropy_collapse": False, "is_answer": True},
    ]
    assert summarize_collapse(recs) == {
        "L_copy": 1,
        "L_copy_H": 2,
        "L_semantic": 3,
        "delta_layers": 2,
    }
    no_answer = [dict(r, is_answer=False) for r in recs]
    assert summarize_collapse(no_answer) == {
        "L_copy": 1,
        "L_copy_H": 2,
        "L_semantic": None,
        "delta_layers": None,
    }
    assert summarize_collapse(iter([])) == {
        "L_copy": None,
        "L_copy_H": None,
        "L_semantic": None,
        "delta_layers": None,
    }
