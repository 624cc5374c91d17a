"""TokenCodec: forward ids under each BOS policy and with a chat template.

``auto`` must do what the tokenizer itself does for ``tokenizer(text)``, ``always`` what
TransformerLens' ``to_tokens`` does, ``never`` no BOS; specials the tokenizer appends (EOS)
never reach the forward ids.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lenscheck.backends.tokens import ChatTemplateError, TokenCodec

VOCAB = ["<unk>", "<bos>", "<eos>", "<user>", "<assistant>", " the", " capital", " is", " x"]


class Tokenizer:
    """Word-level tokenizer; ``adds``: what ``tokenizer(text)`` puts around the text."""

    def __init__(self, *, adds_bos: bool, adds_eos: bool = False, bos: int | None = 1) -> None:
        self.bos_token_id = bos
        self.eos_token_id = 2
        self.all_special_ids = [i for i in (bos, 2) if i is not None]
        self.adds_bos, self.adds_eos = adds_bos, adds_eos
        self.chat_template: str | None = None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        words = re.findall(r"<\w+>| ?\w+", text)
        ids = [VOCAB.index(w) if w in VOCAB else 0 for w in words]
        if add_special_tokens:
            ids = [self.bos_token_id] * (self.adds_bos and self.bos_token_id is not None) + ids
            ids += [self.eos_token_id] * self.adds_eos
        return {"input_ids": ids}  # type: ignore[dict-item]

    def apply_chat_template(self, turns: list[dict[str, str]], **kw: Any) -> str:
        assert kw == {"tokenize": False, "add_generation_prompt": True}
        (turn,) = turns
        assert turn["role"] == "user"
        return f"<bos><user>{turn['content']}<assistant>"

    def decode(self, ids: list[int], clean_up_tokenization_spaces: bool = True) -> str:
        return "".join(VOCAB[i] for i in ids)


TEXT = " the capital is"
PLAIN = [5, 6, 7]


@pytest.mark.parametrize(
    ("adds_bos", "policy", "expected"),
    [
        (False, "auto", PLAIN),  # SmolLM2, Qwen2.5: the tokenizer adds no BOS
        (True, "auto", [1, *PLAIN]),  # Gemma, Llama: it does
        (False, "always", [1, *PLAIN]),
        (True, "always", [1, *PLAIN]),
        (False, "never", PLAIN),
        (True, "never", PLAIN),
    ],
)
def test_each_policy_gives_the_ids_it_names(
    adds_bos: bool, policy: Any, expected: list[int]
) -> None:
    codec = TokenCodec(Tokenizer(adds_bos=adds_bos), bos=policy)
    assert codec.encode(TEXT) == expected
    assert codec.adds_bos is adds_bos
    assert codec.prompt_ids(TEXT) == PLAIN  # the copy-detection set never has a special


@given(st.sampled_from(["auto", "always", "never"]), st.booleans())
def test_no_bos_token_means_no_bos_whatever_the_policy(policy: Any, adds: bool) -> None:
    assert TokenCodec(Tokenizer(adds_bos=adds, bos=None), bos=policy).encode(TEXT) == PLAIN


def test_auto_leaves_out_an_eos_the_tokenizer_appends() -> None:
    tok = Tokenizer(adds_bos=True, adds_eos=True)
    assert tok(TEXT)["input_ids"] == [1, *PLAIN, 2]
    assert TokenCodec(tok, bos="auto").encode(TEXT) == [1, *PLAIN]


def test_the_default_policy_is_transformerlens_rule() -> None:
    """A codec built without a policy keeps the rule every caller had before policies."""
    assert TokenCodec(Tokenizer(adds_bos=False)).encode(TEXT) == [1, *PLAIN]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("auto", [1, 3, *PLAIN, 4]),  # the template writes its own BOS
        ("always", [1, 3, *PLAIN, 4]),  # present already: not doubled
        ("never", [3, *PLAIN, 4]),
    ],
)
def test_a_chat_template_makes_the_prompt_a_user_turn(policy: Any, expected: list[int]) -> None:
    tok = Tokenizer(adds_bos=False)
    tok.chat_template = "{{ messages }}"
    assert TokenCodec(tok, bos=policy, chat_template=True).encode(TEXT) == expected


def test_a_chat_template_is_refused_where_the_tokenizer_has_none() -> None:
    with pytest.raises(ChatTemplateError) as info:
        TokenCodec(Tokenizer(adds_bos=False), chat_template=True)
    assert "this model's tokenizer has no chat template" in str(info.value)
    assert "--chat-template" in str(info.value) and "--lens-chat-template" in str(info.value)


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="bos must be one of auto, always, never, got 'yes'"):
        TokenCodec(Tokenizer(adds_bos=False), bos="yes")  # type: ignore[arg-type]
