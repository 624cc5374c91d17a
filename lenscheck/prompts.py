"""The fixed prompts: the main context prompt, its ground truth, and the probe set."""

from __future__ import annotations

__all__ = [
    "CONTEXT_PROMPT",
    "GROUND_TRUTH",
    "IMPORTANT_WORDS",
    "TARGET_PREDICTION",
    "TEMPERATURES",
    "TEST_PROMPTS",
    "is_verbose_position",
]

CONTEXT_PROMPT = "Give the city name only, plain text. The capital of Germany is called simply"
GROUND_TRUTH = "Berlin"
TARGET_PREDICTION = "first unseen token (likely 'Berlin')"
IMPORTANT_WORDS = ("Germany", "Berlin", "capital", "Answer", "word", "simply")
TEMPERATURES = (0.1, 2.0)

TEST_PROMPTS = (
    "Berlin is the capital of",
    "Germany's capital city is called simply",
    "The capital city of Germany is named simply",
    "Germany has its capital at the city called simply",
    "In Germany the capital city is simply",
    "Germany's capital city is called",
    "The capital city of Germany is named",
    "Germany has its capital at",
    "In Germany the capital city is known as",
    "Give the country name only, plain text. Berlin is the capital of",
    "Give the city name only, plain text. Germany's capital city is called",
    "Give the city name only, plain text. The capital city of Germany is named simply",
    "Give the city name only, plain text. Germany has its capital at",
    "Give the city name only, plain text. In Germany, the capital city is known as",
)


def is_verbose_position(pos: int, token_str: str, seq_len: int) -> bool:
    """Record top-20 (not top-5) here: the last position, or a token naming a key word.

    The token is lower-cased and stripped of ``.,!?;:`` at both ends (whitespace is
    kept, as in the original), then searched for each important word.
    """
    if pos == seq_len - 1:
        return True
    text = token_str.lower().strip(".,!?;:")
    return any(w.lower() in text for w in IMPORTANT_WORDS)
