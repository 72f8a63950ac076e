"""What a typed message may be: cleaned of what cannot be stored or tokenized, refused when empty or huge, and
trimmed to the model's context by leaving out the oldest turns."""

from __future__ import annotations

import unicodedata
from typing import Callable

from playground.errors import GenerationError

MAX_MESSAGE_CHARS = 8000  # a long article fits; a 1 MB paste does not


def clean_message(text: str | None, what: str = "message") -> str:
    """The text with lone surrogates (invalid UTF-8 from a paste) replaced and control characters other than
    newlines and tabs removed; GenerationError when nothing is left or it is over the limit."""
    text = (text or "").encode("utf-8", "replace").decode("utf-8")
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")
    if not text.strip():
        raise GenerationError(f"the {what} is empty; type a question or some text to continue")
    if len(text) > MAX_MESSAGE_CHARS:
        raise GenerationError(
            f"the {what} is {len(text):,} characters; the limit is {MAX_MESSAGE_CHARS:,}: shorten it, or send it "
            "in parts over several turns"
        )
    return text


def fit_context(build: Callable[[list[dict]], str], history: list[dict], count_tokens: Callable[[str], int],
                room: int) -> tuple[str, int]:
    """(prompt, turns left out): the prompt `build(history)` makes, leaving out the oldest exchanges until it
    takes at most `room` tokens; GenerationError when even the message alone does not fit."""
    dropped = 0
    while True:
        prompt = build(history[dropped:])
        used = count_tokens(prompt)
        if used <= room:
            return prompt, dropped
        if dropped + 2 > len(history):
            raise GenerationError(
                f"the prompt is {used:,} tokens and only {room:,} fit with the answer's room: shorten the message, "
                "lower max new tokens, or use fewer worked examples"
            )
        dropped += 2  # one user turn and its answer
