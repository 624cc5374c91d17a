"""lenscheck.metrics.nexttoken under tied logits: every file names one top-1.

torch.topk breaks a tie among equal logits by its k, so before the records' choice was
handed in, the rawlens sidecar's lens top-1 could name another token than the pure CSV's
(the embedded model in bfloat16 did, on five rows of the example suite).
"""

from __future__ import annotations

import torch

from lenscheck.metrics.nexttoken import NextTokenInputs, next_token_metrics

V, LAYERS = 64, 3


def _inputs(top1: list[int] | None) -> NextTokenInputs:
    gen = torch.Generator().manual_seed(0)
    lens = torch.randn(LAYERS, V, generator=gen)
    lens[:, 5] = lens[:, 40] = lens.max(-1).values + 1.0  # ids 5 and 40 tie at the top
    return NextTokenInputs(
        lens_logits=lens,
        raw_logits=torch.randn(LAYERS, V, generator=gen),
        final_logits=lens[-1].clone(),
        residual=torch.randn(LAYERS, 8, generator=gen),
        unembedded=torch.randn(LAYERS, 8, generator=gen),
        bias=None,
        answer=40,
        prompt_seq=[1, 2, 3],
        decode=lambda i: f"<{i}>",
        copy_margin=0.1,
        start=0,
        top1=top1,
    )


def test_the_records_top1_is_every_files_top1_under_a_tie() -> None:
    for chosen in (5, 40):
        out = next_token_metrics(_inputs([chosen] * LAYERS))
        assert [r["top1_token_id_norm"] for r in out.rawlens] == [chosen] * LAYERS
        assert [r["top1_token_str_norm"] for r in out.rawlens] == [f"<{chosen}>"] * LAYERS
        # Rank 1 counts the ids strictly above: the tied answer is rank 1 either way, and
        # its probability is the top-1's.
        assert [r["answer_rank"] for r in out.pure] == [1] * LAYERS
        assert all(r["p_answer"] == r["p_top1"] for r in out.pure)
        # The gap to the second-largest logit is 0 for a tie; only defined at rank 1.
        assert [r["answer_logit_gap"] for r in out.pure] == [0.0] * LAYERS


def test_without_a_choice_handed_in_the_top2_of_the_logits_chooses() -> None:
    x = _inputs(None)
    want = torch.topk(x.lens_logits, 2, dim=-1).indices[:, 0].tolist()
    out = next_token_metrics(x)
    assert [r["top1_token_id_norm"] for r in out.rawlens] == want
    p1 = torch.softmax(x.lens_logits, -1).max(-1).values
    got = torch.tensor([r["p_top1_norm"] for r in out.rawlens])
    assert torch.allclose(got, p1, atol=1e-6)
