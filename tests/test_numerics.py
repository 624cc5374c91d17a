"""lenscheck.numerics: entropy and KL in bits, top-k with full-softmax probabilities, casts."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lenscheck.numerics import (
    LN2,
    bits_entropy_from_logits,
    check_finite_logits,
    entropy_bits,
    entropy_from_probs,
    entropy_from_top1,
    kl_bits,
    safe_cast_for_unembed,
    top_k,
    topk_probs,
)
from lenscheck.schema import rest_mass
from lenscheck.strategies import finite_logits

pytestmark = pytest.mark.usefixtures("torch_single_thread")

NEG_INF = float("-inf")


def reference_entropy_bits(logits: torch.Tensor) -> float:
    """Entropy in bits computed independently in float64 (0 log 0 = 0)."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    p = logp.exp()
    terms = torch.where(p > 0, -p * logp, torch.zeros_like(p))
    return float(terms.sum()) / math.log(2)


def n_finite(logits: torch.Tensor) -> int:
    return int(torch.isfinite(logits).sum())


# --------------------------------------------------------------------- entropy properties


@given(logits=finite_logits())
def test_entropy_is_bounded_by_zero_and_log2_of_support(logits: torch.Tensor) -> None:
    h = bits_entropy_from_logits(logits)
    assert isinstance(h, float)
    assert math.copysign(1.0, h) == 1.0  # never NaN, never -0.0
    assert 0.0 <= h <= math.log2(n_finite(logits)) + 1e-5
    assert h == pytest.approx(reference_entropy_bits(logits), abs=2e-5, rel=2e-5)


@pytest.mark.parametrize("shape", [(3,), (2, 3)])
def test_one_hot_entropy_is_positive_zero(shape: tuple[int, ...]) -> None:
    """A row whose softmax is exactly one-hot sums -0.0 terms: the entropy is +0.0, which the
    CSV writes as ``0.0`` (a ``-0.0`` would be a byte change)."""
    logits = torch.full(shape, NEG_INF)
    logits[..., 1] = 7.0
    h = entropy_bits(logits).reshape(-1).tolist()
    assert h == [0.0] * len(h)
    assert [math.copysign(1.0, x) for x in h] == [1.0] * len(h)


@given(vocab=st.integers(1, 4096), value=st.floats(-1e4, 1e4), masked=st.integers(0, 64))
def test_uniform_logits_give_log2_of_vocabulary(vocab: int, value: float, masked: int) -> None:
    logits = torch.full((vocab + masked,), value)
    logits[vocab:] = NEG_INF  # masked ids do not count
    h = bits_entropy_from_logits(logits)
    assert h == pytest.approx(math.log2(vocab), abs=1e-5 * max(1.0, math.log2(vocab)))


@given(logits=finite_logits(max_abs=5e3), k=st.integers(-80000, 80000))
def test_entropy_invariant_to_adding_a_constant(logits: torch.Tensor, k: int) -> None:
    # Multiples of 1/16 below 2^14 in magnitude add exactly in fp32, so the test checks the
    # entropy's own invariance, not the rounding of logits + c.
    x = torch.round(logits * 16) / 16
    c = k / 16
    h = bits_entropy_from_logits(x)
    assert bits_entropy_from_logits(x + c) == pytest.approx(h, abs=1e-6)


@given(logits=finite_logits(batch_shape=(3,), max_vocab=64))
def test_batched_entropy_equals_row_by_row(logits: torch.Tensor) -> None:
    batched = entropy_bits(logits)
    assert batched.shape == (3,) and batched.dtype == torch.float32
    rows = [bits_entropy_from_logits(row) for row in logits]
    assert batched.tolist() == rows


# ------------------------------------------------- lenscheck's entropy, through the top-1


def top1_entropy(logits: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """entropy_from_top1 as the lens calls it: softmax and top-1 id of fp32 logits;
    ``in_place``: z - max z written over a copy of the logits, as the lens' chunks do."""
    x = logits.float()
    probs = torch.softmax(x, dim=-1)
    top = torch.topk(x, 1).indices
    if in_place:
        x = x.clone()
        return entropy_from_top1(probs, x, top, work=x)
    return entropy_from_top1(probs, x, top)


@given(logits=finite_logits(batch_shape=(2,)), masked=st.integers(0, 3))
def test_top1_entropy_is_bounded_and_matches_the_float64_reference(
    logits: torch.Tensor, masked: int
) -> None:
    """Within the bounds, never NaN or -0.0, banned ids included (the p log p fallback), and
    as close to float64 as the original's formula is asked to be."""
    logits[:, :masked] = NEG_INF
    logits[:, -1] = 0.0  # every row keeps an id the mask spares
    h = top1_entropy(logits)
    for row, value in zip(logits, h.tolist()):
        assert math.copysign(1.0, value) == 1.0
        assert 0.0 <= value <= math.log2(n_finite(row)) + 1e-5
        assert value == pytest.approx(reference_entropy_bits(row), abs=2e-5, rel=2e-5)


@given(logits=finite_logits(batch_shape=(3,)))
def test_top1_entropy_agrees_with_the_original_formula(logits: torch.Tensor) -> None:
    """The two formulas differ only by fp32 rounding (measured: 5e-5 bits on a 49k
    vocabulary, where both err that much against float64)."""
    h = top1_entropy(logits)
    original = entropy_bits(logits)
    assert torch.allclose(h, original, atol=2e-5, rtol=2e-5)


@given(logits=finite_logits(batch_shape=(3,)))
def test_top1_entropy_in_place_gives_the_same_bits(logits: torch.Tensor) -> None:
    assert torch.equal(top1_entropy(logits, in_place=True), top1_entropy(logits))


@given(vocab=st.integers(1, 4096), value=st.floats(-1e4, 1e4), masked=st.integers(0, 64))
def test_top1_entropy_of_uniform_logits_is_log2_of_vocabulary(
    vocab: int, value: float, masked: int
) -> None:
    logits = torch.full((1, vocab + masked), value)
    logits[:, vocab:] = NEG_INF
    h = float(top1_entropy(logits))
    assert h == pytest.approx(math.log2(vocab), abs=1e-5 * max(1.0, math.log2(vocab)))


@given(logits=finite_logits(max_abs=5e3), k=st.integers(-80000, 80000))
def test_top1_entropy_invariant_to_adding_a_constant(logits: torch.Tensor, k: int) -> None:
    x = torch.round(logits * 16) / 16  # exact in fp32: see the p log p test above
    c = k / 16
    assert float(top1_entropy(x + c)) == pytest.approx(float(top1_entropy(x)), abs=1e-6)


def test_top1_entropy_of_a_one_hot_row_is_positive_zero() -> None:
    logits = torch.full((2, 3), NEG_INF)
    logits[:, 1] = 7.0
    h = top1_entropy(logits).tolist()
    assert h == [0.0, 0.0] and [math.copysign(1.0, x) for x in h] == [1.0, 1.0]


def test_top1_entropy_of_invalid_logits_is_nan_for_the_caller_to_diagnose() -> None:
    """The lens checks the entropies, not the logits: NaN or +inf must not come out finite."""
    for bad in (float("nan"), float("inf")):
        logits = torch.zeros(2, 5)
        logits[1, 2] = bad
        h = top1_entropy(logits)
        assert math.isfinite(h[0]) and not math.isfinite(h[1])


# ----------------------------------------------------------------------- top-k properties


@given(logits=finite_logits(max_vocab=256))
def test_topk_with_k_equal_vocab_sums_to_one(logits: torch.Tensor) -> None:
    top = topk_probs(logits, logits.shape[-1])
    ids = top.ids.tolist()
    assert sorted(ids) == list(range(logits.shape[-1]))  # every id once
    probs = top.probs.tolist()
    rest = rest_mass(probs)
    assert rest >= 0.0
    assert sum(probs) + rest == pytest.approx(1.0, abs=1e-6)


@given(logits=finite_logits(), k=st.integers(1, 40))
def test_topk_probabilities_are_full_softmax_of_the_largest_logits(
    logits: torch.Tensor, k: int
) -> None:
    top = topk_probs(logits, k)
    kk = min(k, logits.shape[-1])
    assert top.ids.shape == top.probs.shape == (kk,)
    ids = top.ids.tolist()
    assert len(set(ids)) == kk
    # ids are the k largest logits, in order
    picked = logits[top.ids]
    assert (picked[:-1] >= picked[1:]).all()
    others = torch.ones_like(logits, dtype=torch.bool)
    others[top.ids] = False
    if others.any():
        assert float(picked.min()) >= float(logits[others].max())
    # probabilities from the full softmax (float64 reference)
    ref = torch.softmax(logits.double(), dim=-1)
    torch.testing.assert_close(top.probs.double(), ref[top.ids], rtol=1e-5, atol=1e-7)
    rest = rest_mass(top.probs.tolist())
    assert rest >= 0.0
    assert rest == pytest.approx(max(0.0, 1.0 - float(ref[top.ids].sum())), abs=1e-6)


def test_topk_rejects_k_below_one_and_clamps_large_k() -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        topk_probs(torch.zeros(4), 0)
    top = topk_probs(torch.tensor([0.0, math.log(3.0)]), 10)
    assert top.ids.tolist() == [1, 0]
    assert top.probs.tolist() == pytest.approx([0.75, 0.25])


def test_topk_probs_reads_the_softmax_it_is_handed() -> None:
    """``probs=``: the caller's softmax is gathered, not recomputed (the lens passes the
    [rows, V] buffer it already filled; a second softmax would cost another one)."""
    logits = torch.tensor([[0.0, 2.0, 1.0]])
    handed = torch.tensor([[0.5, 0.25, 0.125]])  # deliberately not softmax(logits)
    top = topk_probs(logits, 2, probs=handed)
    assert top.ids.tolist() == [[1, 2]]  # still ranked by logit
    assert top.probs.tolist() == [[0.25, 0.125]]


# -------------------------------------------------------------------------- KL properties


@given(logits=finite_logits(batch_shape=(2,)))
def test_kl_of_identical_inputs_is_exactly_zero(logits: torch.Tensor) -> None:
    kl = kl_bits(logits, logits.clone())
    assert kl.tolist() == [0.0, 0.0]


@given(data=st.data())
def test_kl_is_nonnegative_and_matches_reference(data: st.DataObject) -> None:
    p = data.draw(finite_logits(max_vocab=128, allow_neg_inf=False), label="p")
    q = data.draw(
        finite_logits(
            min_vocab=p.shape[-1], max_vocab=p.shape[-1], allow_neg_inf=False, max_abs=50.0
        ),
        label="q",
    )
    kl = float(kl_bits(p, q))
    assert kl >= 0.0 and math.isfinite(kl)
    logp = torch.log_softmax(p.double(), -1)
    logq = torch.log_softmax(q.double(), -1)
    ref = float((logp.exp() * (logp - logq)).sum()) / math.log(2)
    assert kl == pytest.approx(max(ref, 0.0), abs=1e-4, rel=1e-4)


def test_kl_known_value_and_masks() -> None:
    p = torch.tensor([0.0, 0.0]).log_softmax(-1)
    q = torch.tensor([0.25, 0.75]).log()
    expected = 0.5 * math.log2(0.5 / 0.25) + 0.5 * math.log2(0.5 / 0.75)
    assert float(kl_bits(p, q)) == pytest.approx(expected, rel=1e-6)
    masked = torch.tensor([0.0, 1.0, NEG_INF])
    # ids that P masks contribute nothing, also where Q masks them as well
    assert float(kl_bits(masked, masked)) == 0.0
    assert float(kl_bits(masked, torch.tensor([0.0, 1.0, 5.0]))) > 0.0
    assert math.isfinite(float(kl_bits(masked, torch.tensor([0.0, 1.0, 5.0]))))
    # P puts mass where Q has none: infinite, not NaN
    assert float(kl_bits(torch.tensor([0.0, 0.0]), torch.tensor([0.0, NEG_INF]))) == math.inf
    with pytest.raises(ValueError, match="same shape"):
        kl_bits(torch.zeros(3), torch.zeros(4))


# ----------------------------------------------------------------------- entropy: units


def test_uniform_vs_peaked_entropy() -> None:
    assert bits_entropy_from_logits(torch.zeros(8)) == pytest.approx(3.0, abs=1e-6)
    assert bits_entropy_from_logits(torch.zeros(2)) == pytest.approx(1.0, abs=1e-7)
    peaked = torch.tensor([10.0, 0.0, 0.0, 0.0])
    p = math.exp(10) / (math.exp(10) + 3)
    q = 1 / (math.exp(10) + 3)
    expected = -(p * math.log2(p) + 3 * q * math.log2(q))
    assert bits_entropy_from_logits(peaked) == pytest.approx(expected, rel=1e-4)
    assert bits_entropy_from_logits(peaked) < 0.01
    assert bits_entropy_from_logits(torch.zeros(4)) == pytest.approx(2.0, abs=1e-6)


def test_entropy_stable_on_extremes() -> None:
    delta = bits_entropy_from_logits(torch.tensor([1e4, -1e4, 0.0]))
    assert delta == 0.0 and math.copysign(1.0, delta) == 1.0  # 0, not -0.0 or NaN
    assert bits_entropy_from_logits(torch.tensor([1e4, 1e4, -1e4])) == pytest.approx(1.0)
    huge = torch.tensor([3e38, -3e38, 3e38, 0.0])
    assert bits_entropy_from_logits(huge) == pytest.approx(1.0)
    tiny = torch.tensor([1e-30, -1e-30, 0.0, 1e-45])
    assert bits_entropy_from_logits(tiny) == pytest.approx(2.0, abs=1e-6)


def test_entropy_computed_in_fp32_for_half_precision_logits() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, generator=gen) * 3
    for dtype in (torch.float16, torch.bfloat16):
        low = x.to(dtype)
        assert bits_entropy_from_logits(low) == bits_entropy_from_logits(low.float())
        assert entropy_bits(low).dtype == torch.float32


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.0, math.nan, 1.0], "contains NaN; expected finite values or -inf for masked ids"),
        ([0.0, math.inf, 1.0], "contains +inf; expected finite values or -inf for masked ids"),
        ([NEG_INF, NEG_INF], "has a row where every value is -inf: no distribution to measure"),
    ],
)
def test_invalid_logits_raise_word_for_word(values: list[float], message: str) -> None:
    with pytest.raises(ValueError) as info:
        bits_entropy_from_logits(torch.tensor(values))
    assert str(info.value) == f"logits {message}"
    with pytest.raises(ValueError) as info:
        entropy_bits(torch.tensor([[0.0] * len(values), values]))  # a bad second row
    assert str(info.value) == f"logits {message}"
    # check_finite_logits names what it checks; one bad row of a batch is enough.
    with pytest.raises(ValueError) as info:
        check_finite_logits(torch.tensor([values]), "lens logits")
    assert str(info.value) == f"lens logits {message}"


def test_neg_inf_is_a_legitimate_mask() -> None:
    assert bits_entropy_from_logits(torch.tensor([0.0, NEG_INF])) == 0.0
    assert bits_entropy_from_logits(torch.tensor([2.0, NEG_INF, 2.0, NEG_INF])) == pytest.approx(
        1.0
    )


@pytest.mark.parametrize(
    ("bad", "got"),
    [
        (torch.zeros(2, 3), "Tensor of shape (2, 3) and dtype torch.float32"),
        (torch.tensor(1.0), "Tensor of shape () and dtype torch.float32"),
        ([0.0, 1.0], "[0.0, 1.0] (list)"),
    ],
)
def test_entropy_wants_one_dimensional_logits(bad: object, got: str) -> None:
    with pytest.raises(ValueError) as info:
        bits_entropy_from_logits(bad)  # type: ignore[arg-type]
    assert str(info.value) == f"logits must be a 1-D tensor of vocabulary logits, got {got}"


# --------------------------------------------------------------- safe_cast_for_unembed


FLOAT_W = [torch.float16, torch.bfloat16, torch.float32]


@pytest.mark.parametrize("w_dtype", FLOAT_W)
@pytest.mark.parametrize("resid_dtype", FLOAT_W)
def test_cast_follows_float_unembedding(w_dtype: torch.dtype, resid_dtype: torch.dtype) -> None:
    resid = torch.tensor([[0.5, -1.25, 3.0]], dtype=resid_dtype)
    W_U = torch.ones(3, 5, dtype=w_dtype)
    out = safe_cast_for_unembed(resid, W_U)
    assert out.dtype == w_dtype
    assert out.float().tolist() == resid.float().tolist()  # exactly representable values
    logits = out @ W_U  # the cast exists so this matmul works
    assert logits.float().tolist() == [[2.25] * 5]


@pytest.mark.parametrize("resid_dtype", FLOAT_W)
def test_force_fp32_with_promoted_unembedding(resid_dtype: torch.dtype) -> None:
    resid = torch.tensor([1.0, 2.0], dtype=resid_dtype)
    W_U = torch.ones(2, 4, dtype=torch.float32)
    out = safe_cast_for_unembed(resid, W_U, force_fp32_unembed=True)
    assert out.dtype == torch.float32
    assert (out @ W_U).tolist() == [3.0] * 4


@pytest.mark.parametrize("w_dtype", [torch.float16, torch.bfloat16])
def test_force_fp32_cannot_break_a_half_precision_matmul(w_dtype: torch.dtype) -> None:
    # The flag only forces fp32 once the caller promoted W_U; with a half-precision W_U the
    # residual follows W_U (an fp32 residual would make the matmul fail).
    resid = torch.tensor([1.0, 2.0])
    W_U = torch.ones(2, 4, dtype=w_dtype)
    out = safe_cast_for_unembed(resid, W_U, force_fp32_unembed=True)
    assert out.dtype == w_dtype
    assert (out @ W_U).float().tolist() == [3.0] * 4


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("resid_dtype", FLOAT_W)
def test_quantized_unembedding_leaves_activations_alone(
    force: bool, resid_dtype: torch.dtype
) -> None:
    resid = torch.tensor([1.5, -2.0], dtype=resid_dtype)
    W_U = torch.ones(2, 4, dtype=torch.int8)
    out = safe_cast_for_unembed(resid, W_U, force_fp32_unembed=force)
    assert out is resid
    assert out.dtype == resid_dtype


def test_force_flag_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        safe_cast_for_unembed(torch.zeros(2), torch.zeros(2, 2), True)  # type: ignore[misc]


@given(logits=finite_logits(batch_shape=(3,)))
def test_entropy_scratch_buffer_gives_the_same_bits(logits: torch.Tensor) -> None:
    """``work=``: the terms go into the caller's buffer; the entropy is bit-identical."""
    probs = torch.softmax(logits.float(), dim=-1)
    work = torch.full_like(probs, float("nan"))
    assert torch.equal(entropy_from_probs(probs, work=work), entropy_from_probs(probs))
    assert not torch.isnan(work).any()  # the buffer held the terms


@given(
    logits=st.lists(st.floats(-200, 200, width=32), min_size=1, max_size=64),
    scale=st.sampled_from([1.0, 10.0, 100.0, 1000.0]),
    extra=st.lists(
        st.sampled_from([0.0, 1e-45, 1e-40, 1e-38, 2.0**-109, 2.0**-108, 1.6e-33, 3.1e-33]),
        max_size=8,
    ),
)
def test_entropy_adds_the_epsilon_only_where_it_changes_p_same_bits(
    logits: list[float], scale: float, extra: list[float]
) -> None:
    """Property: the float32 entropy, which adds 1e-40 only below 2**-108, has the bits of
    the plain -sum(p * log(p + 1e-40)) / ln 2, subnormal and threshold values included."""
    probs = torch.softmax(torch.tensor(logits) * scale, dim=-1)
    probs = torch.cat([probs, torch.tensor(extra, dtype=torch.float32)])[None]
    plain = torch.add(probs, 1e-40)
    plain.log_().mul_(probs)
    want = -plain.sum(dim=-1) / LN2 + 0.0
    assert torch.equal(entropy_from_probs(probs), want)
    assert torch.equal(entropy_from_probs(probs, work=torch.empty_like(probs)), want)


@st.composite
def _blocked_rows(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    """Rows long enough for top_k's blocks (4k blocks of 64 at least, often a partial last
    block), with ties (integer-valued logits), -inf and NaN sometimes."""
    k = draw(st.integers(1, 8))
    width = draw(st.integers(4 * k * 64, 4 * k * 64 + 200))
    rows = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, width, generator=gen) * 4
    if draw(st.booleans()):
        x = x.round()  # many exact ties
    if draw(st.booleans()):
        x[:, draw(st.integers(0, width - 1))] = NEG_INF
    if draw(st.booleans()):  # the largest values all in the partial last block
        x[:, -(width % 64 or 1) :] += 100
    return x, k


@given(_blocked_rows())
def test_top_k_gives_torch_topks_values_and_ids_but_among_ties(case: Any) -> None:
    x, k = case
    values, ids = top_k(x, k)
    want_values, want_ids = torch.topk(x, k)
    assert torch.equal(values, want_values)
    assert torch.equal(x.gather(-1, ids), values)  # each id holds its value
    assert all(len(set(row)) == k for row in ids.tolist())  # no id twice
    distinct = [len(set(row)) == k for row in want_values.tolist()]
    for row, ok in enumerate(distinct):
        if ok and (x[row] == want_values[row, -1]).sum() == 1:  # no tie at all in the top-k
            assert ids[row].tolist() == want_ids[row].tolist()


def test_top_k_keeps_leading_dimensions_and_falls_back_on_short_rows() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 5000, generator=gen)
    values, ids = top_k(x, 20)
    assert values.shape == ids.shape == (2, 3, 20)
    assert torch.equal(values, torch.topk(x, 20).values)
    short = torch.randn(4, 100, generator=gen)  # fewer than 4k blocks: torch.topk itself
    assert torch.equal(top_k(short, 5)[1], torch.topk(short, 5).indices)


def test_top_k_puts_nan_first_as_torch_topk_does() -> None:
    x = torch.randn(2, 4096)
    x[0, 100] = float("nan")
    values, ids = top_k(x, 3)
    assert math.isnan(values[0, 0]) and int(ids[0, 0]) == 100
    assert torch.equal(values[1], torch.topk(x[1], 3).values)
