"""Property tests of every pure function of lenscheck.metrics.functions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lenscheck.metrics import functions as f

pytestmark = pytest.mark.filterwarnings("ignore")

_VOCAB = st.integers(2, 40)


@st.composite
def logits(draw: st.DrawFn, rows: int = 3) -> torch.Tensor:
    v = draw(_VOCAB)
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 30.0]))
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, v, generator=g) * scale


def logp(x: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(x, dim=-1)


@settings(max_examples=60, deadline=None)
@given(logits(), logits())
def test_kl_is_non_negative_and_zero_on_itself(a: torch.Tensor, b: torch.Tensor) -> None:
    b = b[:, : a.shape[1]] if b.shape[1] >= a.shape[1] else a.flip(-1)
    kl = f.kl_bits_of(logp(a), logp(b))
    assert (kl >= 0).all()
    assert f.kl_bits_of(logp(a), logp(a)).abs().max() <= 1e-5


@settings(max_examples=60, deadline=None)
@given(logits())
def test_entropy_within_its_bounds(x: torch.Tensor) -> None:
    h = f.entropy_bits_of(logp(x))
    assert (h >= 0).all() and (h <= math.log2(x.shape[1]) + 1e-5).all()
    uniform = f.entropy_bits_of(logp(torch.zeros(1, x.shape[1])))
    assert uniform.item() == pytest.approx(math.log2(x.shape[1]), abs=1e-5)


@settings(max_examples=60, deadline=None)
@given(logits(), st.integers(0, 10**6))
def test_probabilities_order_and_rank_one_is_argmax(x: torch.Tensor, pick: int) -> None:
    a = pick % x.shape[1]
    lp = logp(x)
    p1, p5, pa = f.p_topk(lp, 1), f.p_topk(lp, 5), f.p_of(lp, a)
    assert (p5 + 1e-6 >= p1).all() and (p1 + 1e-6 >= pa).all() and (p5 <= 1.0).all()
    rank = f.answer_rank(x, a)
    assert ((rank == 1) == (x.argmax(-1) == a) | (x[:, a] == x.max(-1).values)).all()
    assert ((rank >= 1) & (rank <= x.shape[1])).all()
    gap = f.logit_gap_to_top1(x, a)
    assert (gap <= 0).all() and ((gap == 0) == (rank == 1)).all()
    assert (f.logit_gap_to_second(x) >= 0).all()


@settings(max_examples=60, deadline=None)
@given(logits(), logits())
def test_divergences_bounded(a: torch.Tensor, b: torch.Tensor) -> None:
    b = a.roll(1, dims=-1) + b[:, :1]
    js = f.js_divergence_bits(logp(a), logp(b))
    assert ((js >= 0) & (js <= 1)).all()
    assert f.js_divergence_bits(logp(a), logp(a)).abs().max() <= 1e-5
    l1 = f.l1_prob_diff(logp(a), logp(b))
    assert ((l1 >= 0) & (l1 <= 2)).all()


@settings(max_examples=60, deadline=None)
@given(logits(), logits(), st.integers(0, 3))
def test_given_exps_and_masked_ids_give_the_masked_first_bits(
    a: torch.Tensor, b: torch.Tensor, masked: int
) -> None:
    """Handing each function the exps it would take gives the same bits; an id P masks
    (-inf) adds 0, the same bits as masking the terms before summing."""
    b = b[:, : a.shape[1]] if b.shape[1] >= a.shape[1] else a.flip(-1)
    a[:, :masked] = float("-inf")
    a[:, -1] = 0.0
    lp, lq = logp(a), logp(b)
    p, q = lp.exp(), lq.exp()
    zero = torch.zeros_like(p)
    assert torch.equal(f.kl_bits_of(lp, lq, p), f.kl_bits_of(lp, lq))
    kl = (torch.where(p > 0, p * (lp - lq), zero).sum(-1) / math.log(2)).clamp_min(0.0) + 0.0
    assert torch.equal(f.kl_bits_of(lp, lq), kl)
    assert torch.equal(f.entropy_bits_of(lp, p), f.entropy_bits_of(lp))
    assert torch.isfinite(f.entropy_bits_of(lp)).all()
    assert torch.equal(f.js_divergence_bits(lp, lq, p, q), f.js_divergence_bits(lp, lq))
    assert torch.equal(f.l1_prob_diff(lp, lq, p, q), f.l1_prob_diff(lp, lq))
    assert torch.equal(f.control_margin(lp, 0, 1, p), f.control_margin(lp, 0, 1))


@settings(max_examples=60, deadline=None)
@given(logits())
def test_entropy_matches_float64_and_the_p_log_p_form(x: torch.Tensor) -> None:
    """Through the top-1 (as the records' entropies): the float64 value to fp32 rounding."""
    lp = torch.log_softmax(x.double(), dim=-1)
    reference = -(lp.exp() * lp).sum(-1) / math.log(2)
    assert torch.allclose(f.entropy_bits_of(logp(x)).double(), reference, atol=2e-5, rtol=2e-5)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(0, 99), max_size=60), st.sets(st.integers(0, 99), max_size=60))
def test_jaccard_in_unit_interval(a: set[int], b: set[int]) -> None:
    j = f.topk_jaccard(a, b)
    assert 0.0 <= j <= 1.0
    assert f.topk_jaccard(a, a) == 1.0
    assert (j == 1.0) == (a == b)


@settings(max_examples=40, deadline=None)
@given(logits(), st.integers(1, 60))
def test_topk_ids_are_the_largest(x: torch.Tensor, k: int) -> None:
    sets = f.topk_ids(x, k)
    for row, ids in zip(x, sets):
        assert len(ids) == min(k, x.shape[1])
        assert min(row[i] for i in ids) >= max(
            (row[j] for j in range(len(row)) if j not in ids), default=-math.inf
        )


#: Entries 0 or of normal float32 size: a subnormal entry times s can underflow to 0 in
#: float32, and then a * s is no longer a scaled copy of a (falsified in the gate).
_ENTRY = st.floats(-5, 5).filter(lambda x: x == 0 or abs(x) > 1e-30)


@settings(max_examples=60, deadline=None)
@given(st.lists(_ENTRY, min_size=1, max_size=8), st.floats(0.1, 10))
def test_cosine_bounds_and_scale_invariance(v: list[float], s: float) -> None:
    a = torch.tensor([v])
    c = f.cosine(a, a * s)
    if a.norm() > 0:
        assert c.item() == pytest.approx(1.0, abs=1e-6)
    assert (f.cosine(a, -a) >= -1).all() and (f.cosine(a, -a) <= 1).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_ENTRY, min_size=4, max_size=4), min_size=1, max_size=5), st.data())
def test_cosine_against_one_vector_is_the_rowwise_cosine(
    rows: list[list[float]], data: st.DataObject
) -> None:
    """One ``b`` for every row (a matrix-vector product) gives each row's own cosine,
    a zero row or vector 0."""
    a = torch.tensor(rows)
    b = torch.tensor(data.draw(st.lists(_ENTRY, min_size=4, max_size=4)))
    got = f.cosine(a, b)
    assert got.shape == (len(rows),)
    for n, row in enumerate(a):
        assert got[n].item() == pytest.approx(f.cosine(row[None], b[None]).item(), abs=1e-6)
        if row.norm() == 0 or b.norm() == 0:
            assert got[n].item() == 0.0


def test_copy_rules_at_their_boundaries() -> None:
    prompt = {5, 7}
    assert f.copy_strict(5, 0.96, 0.0, prompt, " Berlin", 0.95, 0.05)
    assert not f.copy_strict(5, 0.95, 0.0, prompt, " Berlin", 0.95, 0.05)  # strict >
    assert not f.copy_strict(5, 0.96, 0.92, prompt, " Berlin", 0.95, 0.05)  # margin
    assert not f.copy_strict(6, 0.96, 0.0, prompt, " Berlin", 0.95, 0.05)  # not in prompt
    assert not f.copy_strict(5, 0.96, 0.0, prompt, " ,", 0.95, 0.05)  # punctuation only
    assert f.copy_soft([7, 8], 0.6, [1, 7, 8, 9], 0.5)
    assert not f.copy_soft([8, 7], 0.6, [1, 7, 8, 9], 0.5)  # not contiguous in order
    assert not f.copy_soft([7, 8], 0.5, [1, 7, 8, 9], 0.5)
    assert not f.copy_soft([], 0.9, [1], 0.5)
    assert f.first_layer([True, False, True], start=1) == 2
    assert f.first_layer([False]) is None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=4),
    st.lists(st.integers(0, 5), max_size=10),
    st.floats(0, 1),
)
def test_copy_soft_is_contiguous_subsequence(w: list[int], seq: list[int], p1: float) -> None:
    expected = p1 > 0.5 and any(seq[i : i + len(w)] == w for i in range(len(seq)))
    assert f.copy_soft(w, p1, seq, 0.5) == expected


@given(logits(), st.integers(0, 10**6), st.integers(0, 10**6))
def test_control_margin_is_the_difference_of_two_probabilities(
    x: torch.Tensor, i: int, j: int
) -> None:
    logp = torch.log_softmax(x, dim=-1)
    own, other = i % x.shape[-1], j % x.shape[-1]
    m = f.control_margin(logp, own, other)
    p = logp.exp()
    assert m.shape == x.shape[:-1]
    assert torch.allclose(m, p[..., own] - p[..., other], atol=1e-6)
    assert bool(((m >= -1) & (m <= 1)).all())
    # Antisymmetric, zero on one id, positive exactly where the own answer is more likely.
    assert torch.equal(f.control_margin(logp, other, own), -m)
    assert bool((f.control_margin(logp, own, own) == 0).all())
    assert torch.equal(m > 0, p[..., own] > p[..., other])


@given(st.lists(st.one_of(st.none(), st.floats(-1, 1)), max_size=12))
def test_control_summary_reads_its_margins(margins: list[float | None]) -> None:
    s = f.control_summary(margins)
    known = [m for m in margins if m is not None]
    if not known:
        assert set(s.values()) == {None}
        return
    first = s["first_positive_margin_layer"]
    assert s["max_control_margin"] == max(known)
    assert margins[s["max_control_margin_layer"]] == max(known)  # type: ignore[index]
    assert all(m is None or m < max(known) for m in margins[: s["max_control_margin_layer"]])  # type: ignore[misc]
    if first is None:
        assert max(known) <= 0
    else:
        assert margins[first] > 0 and all(m is None or m <= 0 for m in margins[:first])  # type: ignore[operator]


def test_control_summary_on_a_known_column() -> None:
    assert f.control_summary([None, -0.2, 0.1, 0.3, 0.3, -0.1]) == {
        "first_positive_margin_layer": 2,
        "max_control_margin": 0.3,
        "max_control_margin_layer": 3,
    }
