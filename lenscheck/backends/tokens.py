"""Tokenization shared by every backend, so all of them see the same ids and strings."""

from __future__ import annotations

import functools
import re
from functools import lru_cache
from typing import Any

from lenscheck.vocab import BOS_ALWAYS, BOS_AUTO, BOS_NEVER, BOS_POLICIES, BosPolicy

__all__ = ["ChatTemplateError", "CodecBacked", "TokenCodec"]


class ChatTemplateError(ValueError):
    """``--chat-template`` on a tokenizer that has none."""


class TokenCodec:
    """Forward ids under a BOS policy, and per-id decoders, over a transformers tokenizer.

    ``bos``: ``auto`` starts the ids with BOS exactly when the tokenizer itself does for
    ``tokenizer(text)`` (its ``add_bos_token`` / post-processor: the model's own convention);
    ``always`` prepends the tokenizer's BOS id whenever it has one (TransformerLens'
    ``to_tokens``, the original pipeline); ``never`` does not. Other special tokens the
    tokenizer may add (an EOS) are never part of the forward ids: the lens reads the next
    token after the prompt. ``chat_template``: each text becomes a user turn of the tokenizer's
    chat template with the generation prompt appended, and ``auto`` keeps the template's own
    BOS. Top-k texts follow the original pipeline's ``tokenizer.decode([id])``; position
    labels follow ``to_str_tokens`` (no clean-up).
    """

    def __init__(
        self, tokenizer: Any, bos: BosPolicy = BOS_ALWAYS, chat_template: bool = False
    ) -> None:
        if bos not in BOS_POLICIES:
            raise ValueError(f"bos must be one of {', '.join(BOS_POLICIES)}, got {bos!r}")
        self.tokenizer = tokenizer
        found = getattr(tokenizer, "bos_token_id", None)
        self.bos_token_id: int | None = None if found is None else int(found)
        self.bos, self.chat_template = bos, chat_template
        if chat_template and not getattr(tokenizer, "chat_template", None):
            raise ChatTemplateError(
                "--chat-template was asked for, but this model's tokenizer has no chat "
                "template (tokenizer_config.json has no 'chat_template'); expected an "
                "instruct/chat model's tokenizer. Run without --chat-template (pytest: "
                "--lens-chat-template) to read the raw prompt text"
            )
        self.decode = lru_cache(maxsize=None)(self._decode)  # each id decoded once per run
        self.adds_bos = self._tokenizer_adds_bos()

    def prompt_ids(self, text: str) -> list[int]:
        """The text's ids without special tokens."""
        return [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def _tokenizer_adds_bos(self) -> bool:
        """Whether ``tokenizer(text)`` starts with BOS by itself (the model's convention)."""
        if self.bos_token_id is None:
            return False
        probe = "a"
        own = [int(i) for i in self.tokenizer(probe)["input_ids"]]
        return own[:1] == [self.bos_token_id] and self.prompt_ids(probe)[:1] != own[:1]

    def _text_ids(self, text: str) -> list[int]:
        if not self.chat_template:
            return self.prompt_ids(text)
        rendered = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        return self.prompt_ids(str(rendered))  # the template writes its special tokens itself

    def encode(self, text: str, bos: BosPolicy | None = None) -> list[int]:
        """Forward ids of ``text`` under ``bos`` (default: this codec's policy)."""
        if not text:
            raise ValueError("prompt is empty; expected at least one character of text")
        ids = self._text_ids(text)
        policy = bos or self.bos
        if self.bos_token_id is None:
            return ids
        starts = ids[:1] == [self.bos_token_id]
        if policy == BOS_NEVER or (policy == BOS_AUTO and self.chat_template):
            return ids[1:] if starts and policy == BOS_NEVER else ids
        wanted = policy == BOS_ALWAYS or self.adds_bos
        return [self.bos_token_id, *ids] if wanted and not starts else ids

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

    def tokenize_with(self, bos: BosPolicy, chat_template: bool = False) -> None:
        """Tokenize under ``bos`` (and the chat template) from now on."""
        self.codec = TokenCodec(self.codec.tokenizer, bos=bos, chat_template=chat_template)

    def encode(self, text: str) -> list[int]:
        """Forward ids under the run's BOS policy (and chat template)."""
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
