"""Tokenization shared by every backend, so all of them see the same ids and strings."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["TokenCodec"]


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
