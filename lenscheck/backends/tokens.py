"""Tokenization shared by every backend, so all of them see the same ids and strings."""

from __future__ import annotations

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
