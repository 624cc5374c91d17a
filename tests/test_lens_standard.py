"""What the standard preset does that the original pipeline did not (the behaviour spec,
docs/design.md sections 3 and 9): layer 0 apart from the collapse rules, labels that say
what the lens did at the chosen decoding point, the BOS policy honoured and recorded, the
settings in the JSON; and under the original schema none of it, key for key."""

from __future__ import annotations

from typing import Any

import pytest
from _lens_fixtures import FakeTokenizer, make_fake_backend

from lenscheck.config import LensConfig
from lenscheck.lens import run_lens

PROMPT = "Give the city name only, plain text. The capital of Germany is"
NEW_KEYS = {
    "preset",
    "bos",
    "schema",
    "chat_template",
    "collapse_from_layer",
    "embedding_echo",
    "answer_first_id",
    "milestones",
    "raw_lens_summary",
}


def _cfg(**changes: Any) -> LensConfig:
    return LensConfig(prompt=PROMPT, test_prompts=(), **changes)


def _copying_backend() -> Any:
    """A fake whose unembedding is its embedding, scaled: layer 0 decodes each input token
    to itself with p ~ 1, as a model with tied embeddings does at the embeddings."""
    import torch

    fb = make_fake_backend(norm="rmsnorm", n_layers=3)
    fb.lm_weight = fb.embed * 4.0
    fb.unembed = type(fb.unembed)(weight=fb.lm_weight, bias=None, softcap=None, promote=True)
    assert torch.equal(fb.unembed.weight, fb.embed * 4.0)
    return fb


def test_layer_0_is_reported_apart_from_the_collapse_rules() -> None:
    fb = _copying_backend()
    standard = run_lens(fb, _cfg())
    echo = standard.diagnostics["embedding_echo"]
    assert echo["top1"] == " is" and echo["top1_in_prompt"] is True
    assert echo["p_top1"] > 0.99 and echo["copy_collapse"] is True
    row0 = standard.pure_records[0]
    assert (row0["copy_collapse"], row0["entropy_collapse"], row0["is_answer"]) == (
        False,
        False,
        False,
    )
    assert standard.diagnostics["collapse_from_layer"] == 1
    assert standard.diagnostics["L_copy"] != 0 and standard.diagnostics["L_copy_H"] != 0
    # The original schema counts the embeddings, as the original pipeline did.
    original = run_lens(fb, _cfg(schema="original"))
    assert original.pure_records[0]["copy_collapse"] is True
    assert original.diagnostics["L_copy"] == 0
    assert "embedding_echo" not in original.diagnostics
    # Both decode the same values: only the rule's first layer differs.
    assert [r["entropy"] for r in standard.pure_records] == [
        r["entropy"] for r in original.pure_records
    ]


def test_the_ablations_semantic_layer_skips_the_embeddings_too() -> None:
    fb = _copying_backend()
    for point in ("next-ln1", "final", "raw"):
        block = run_lens(fb, _cfg(ground_truth="is")).diagnostics["decoding_ablation"][point]
        assert block["top1"][0] == " is"  # the embeddings decode to the answer's text...
        assert block["L_semantic"] != 0  # ...which is not the model answering
        original = run_lens(fb, _cfg(ground_truth="is", schema="original"))
        assert original.diagnostics["decoding_ablation"][point]["L_semantic"] == 0


@pytest.mark.parametrize(
    ("point", "alignment", "layer0", "use_norm_lens"),
    [
        ("final", "using_final_norm_at_every_layer", "using_final_norm_on_embeddings", True),
        ("raw", "none_raw_lens", "none_raw_lens", False),
        ("next-ln1", "using_ln2_rmsnorm_for_post_block", "using_real_ln1_on_embeddings", True),
    ],
)
def test_the_norm_labels_say_what_the_lens_did_at_the_point(
    point: str, alignment: str, layer0: str, use_norm_lens: bool
) -> None:
    diag = run_lens(make_fake_backend(norm="rmsnorm"), _cfg(decode_norm=point)).diagnostics
    assert (diag["norm_alignment_fix"], diag["layer0_norm_fix"]) == (alignment, layer0)
    assert (diag["decode_norm"], diag["use_norm_lens"]) == (point, use_norm_lens)


class _NoBosTokenizer(FakeTokenizer):
    """Has a BOS token but does not add it by itself (SmolLM2, Qwen2.5)."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return super().__call__(text, add_special_tokens=False)


@pytest.mark.parametrize(
    ("policy", "with_bos"), [("auto", False), ("always", True), ("never", False)]
)
def test_the_run_tokenizes_by_its_policy_and_records_it(policy: str, with_bos: bool) -> None:
    from lenscheck.backends.tokens import TokenCodec

    fb = make_fake_backend()
    fb.codec = TokenCodec(_NoBosTokenizer())  # built with another policy: the run's wins
    result = run_lens(fb, _cfg(bos=policy))
    tok = result.diagnostics["tokenization"]
    assert (tok["input_ids"][0] == 1) is with_bos
    assert result.input_ids == tok["input_ids"]
    assert tok["prepend_bos"] is with_bos
    assert (tok["bos_policy"], tok["tokenizer_adds_bos"], tok["chat_template"]) == (
        policy,
        False,
        False,
    )
    settings = {k: result.diagnostics[k] for k in ("preset", "bos", "schema", "chat_template")}
    assert settings == {
        "preset": "standard",
        "bos": policy,
        "schema": "extended",
        "chat_template": False,
    }


def test_the_original_schema_adds_no_key() -> None:
    """Under the original preset the JSON has exactly the keys it always had."""
    fb = make_fake_backend()
    original = run_lens(fb, _cfg(preset="original"))
    standard = run_lens(fb, _cfg())
    extra = set(standard.diagnostics) - set(original.diagnostics)
    assert extra == NEW_KEYS
    assert list(original.diagnostics["tokenization"]) == ["prepend_bos", "n_tokens", "input_ids"]
    assert not NEW_KEYS & set(original.diagnostics)


def test_the_other_bos_policy_answer_is_recorded_only_where_the_ids_differ() -> None:
    import torch

    from lenscheck.backends.tokens import TokenCodec
    from lenscheck.runner import _record_other_bos

    fb = make_fake_backend()
    same = {"p": run_lens(fb, _cfg())}  # FakeTokenizer adds BOS: auto == always
    _record_other_bos(fb, _cfg(), same)
    assert "other_bos" not in same["p"].diagnostics["tokenization"]

    fb.codec = TokenCodec(_NoBosTokenizer())
    cfg = _cfg()
    results = {"p": run_lens(fb, cfg)}
    _record_other_bos(fb, cfg, results)
    other = results["p"].diagnostics["tokenization"]["other_bos"]
    ids = [1, *results["p"].input_ids]  # the same text with BOS first
    assert (other["policy"], other["input_ids"]) == ("always", ids)
    probs = torch.softmax(fb.run(ids).logits[-1].float(), dim=-1)
    assert other["final_top1"] == fb.decode(int(probs.argmax()))
    assert other["final_p_top1"] == pytest.approx(float(probs.max()), abs=1e-7)
