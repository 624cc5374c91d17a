"""TokenCodec.token_bytes: the bytes behind a token whose text is no whole UTF-8 character
(its decode is U+FFFD), which the heatmap labels show instead of U+FFFD."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from lenscheck.backends.tokens import TokenCodec, _byte_level_alphabet


@pytest.fixture(scope="module")
def embedded_codec() -> TokenCodec:
    from lenscheck.backends import hf
    from lenscheck.models import resolve_model

    return TokenCodec(hf.load_tokenizer(resolve_model("embedded").path, trust_remote_code=False))


def test_the_byte_alphabet_is_gpt2s_bytes_to_unicode_inverted() -> None:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = _byte_level_alphabet()
    assert table == {char: byte for byte, char in bytes_to_unicode().items()}
    assert sorted(table.values()) == list(range(256))
    assert (table["Ġ"], table["Ċ"], table["A"]) == (0x20, 0x0A, 0x41)


def test_byte_level_tokens_give_their_bytes(embedded_codec: TokenCodec) -> None:
    tok = embedded_codec.tokenizer
    hidden = [i for i in range(len(tok)) if "\ufffd" in embedded_codec.decode(i)]
    assert len(hidden) == 314  # SmolLM2's vocabulary: bytes and pieces of characters
    raw = {i: embedded_codec.token_bytes(i) for i in hidden}
    assert all(isinstance(b, bytes) and b for b in raw.values())
    assert raw[111] == b"\xa1"  # a lone continuation byte
    assert raw[48333] == b" \xe0\xa8"  # 'Ġà¨': a space and half a Gurmukhi character
    # Where the text is whole, the bytes decode to exactly the tokenizer's text.
    for i in range(0, len(tok), 97):
        if i not in raw:
            assert embedded_codec.token_bytes(i).decode("utf-8") == embedded_codec.decode(i)


class _SentencePieceLike:
    """convert_ids_to_tokens as a SentencePiece tokenizer with byte fallback answers."""

    bos_token_id = None
    pieces: ClassVar[dict[int, str]] = {0: "<0xE2>", 1: "▁Berlin", 2: "<0x0A>"}

    def convert_ids_to_tokens(self, token_id: int) -> Any:
        return self.pieces[token_id]


def test_sentencepiece_byte_fallback_and_unknown_tokenizers() -> None:
    codec = TokenCodec(_SentencePieceLike())
    assert codec.token_bytes(0) == b"\xe2" and codec.token_bytes(2) == b"\n"
    assert codec.token_bytes(1) is None  # no byte-level decoder: the tokenizer does not say

    class NoPieces:
        bos_token_id = None

    assert TokenCodec(NoPieces()).token_bytes(5) is None
