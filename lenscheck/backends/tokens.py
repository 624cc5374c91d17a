"""Tokenization shared by every backend, so all of them see the same ids and strings."""

from __future__ import annotations

import functools
import re
from functools import lru_cache
from typing import Any

__all__ = ["CodecBacked", "TokenCodec"]


class TokenCodec:
    """BOS-prepending encoder and per-id decoders over a transformers tokenizer.

    Forward ids follow TransformerLens' ``to_tokens``: the BOS id, then the text
    tokenized without special tokens. Top-k texts follow the original pipeline's
    ``tokenizer.decode([id])``; position labels follow ``to_str_tokens`` (no clean-up).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        bos = getattr(tokenizer, "bos_token_id", None)
        self.bos_token_id: int | None = None if bos is None else int(bos)
        self.decode = lru_cache(maxsize=None)(self._decode)  # each id decoded once per run

    def prompt_ids(self, text: str) -> list[int]:
        """The text's ids without special tokens."""
        return [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def encode(self, text: str) -> list[int]:
        """BOS (when the tokenizer has one) followed by :meth:`prompt_ids`."""
        if not text:
            raise ValueError("prompt is empty; expected at least one character of text")
        ids = self.prompt_ids(text)
        return ids if self.bos_token_id is None else [self.bos_token_id, *ids]

    def _decode(self, token_id: int) -> str:
        return str(self.tokenizer.decode([int(token_id)]))

    def token_text(self, token_id: int) -> str:
        """A prompt id as the position label."""
        return str(self.tokenizer.decode([int(token_id)], clean_up_tokenization_spaces=False))

    def token_bytes(self, token_id: int) -> bytes | None:
        """The raw bytes one id stands for, or None when the tokenizer does not say.

        For labels only (the heatmap): an id that is a lone piece of a UTF-8 character
        decodes to U+FFFD, which hides the byte. Byte-level BPE (GPT-2, SmolLM2, Llama 3)
        spells every byte as one character of its alphabet; SentencePiece's byte fallback
        spells it ``<0xE2>``.
        """
        convert = getattr(self.tokenizer, "convert_ids_to_tokens", None)
        piece = None if convert is None else convert(int(token_id))
        if not isinstance(piece, str) or not piece:
            return None
        if match := _SENTENCEPIECE_BYTE.fullmatch(piece):
            return bytes([int(match.group(1), 16)])
        decoder = getattr(getattr(self.tokenizer, "backend_tokenizer", None), "decoder", None)
        alphabet = _byte_level_alphabet()
        if "ByteLevel" in repr(decoder) and all(ch in alphabet for ch in piece):
            return bytes(alphabet[ch] for ch in piece)
        return None


_SENTENCEPIECE_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@functools.cache
def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's character -> byte table (GPT-2's bytes_to_unicode, inverted): the
    printable Latin-1 bytes stand for themselves, the other 68 for chr(256 + n)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    others = [b for b in range(256) if b not in printable]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + n): b for n, b in enumerate(others)})
    return table


class CodecBacked:
    """The four tokenizer methods of the backend protocol, answered by ``self.codec``, and
    the attributes every backend sets alike (:meth:`_identify`).

    Every backend tokenizes and decodes the same way; only how it runs the model differs.
    """

    codec: TokenCodec
    model_id: str
    device: str
    dtype: Any
    bos_token_id: int | None

    def _identify(self, hf_model: Any, tokenizer: Any, model_id: str, device: str) -> None:
        """What every backend sets alike: names, the compute dtype (of the transformers
        model's weights) and the tokenizer."""
        self.model_id, self.device = model_id, device
        self.dtype = next(hf_model.parameters()).dtype
        self.codec = TokenCodec(tokenizer)
        self.bos_token_id = self.codec.bos_token_id

    def encode(self, text: str) -> list[int]:
        """Forward ids: BOS + the text without special tokens."""
        return self.codec.encode(text)

    def prompt_ids(self, text: str) -> list[int]:
        """The text's ids without special tokens (the copy-detection set)."""
        return self.codec.prompt_ids(text)

    def decode(self, token_id: int) -> str:
        """One id decoded on its own, as the top-k columns show it."""
        return self.codec.decode(token_id)

    def token_text(self, token_id: int) -> str:
        """One prompt id as the position label."""
        return self.codec.token_text(token_id)

    def token_bytes(self, token_id: int) -> bytes | None:
        """The raw bytes behind one id (heatmap labels of byte tokens), None if unknown."""
        return self.codec.token_bytes(token_id)
