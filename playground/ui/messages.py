"""Chat history as the model sees it: Gradio 6 items hold a string or a list of content blocks."""

from __future__ import annotations

import html


def displayed(text: str) -> str:
    """Text as a chat column shows it: HTML in a prompt or an answer appears as the characters typed, never as
    markup (the page's Markdown would render <b> or <img>). conversation() reads it back exactly."""
    return html.escape(text, quote=False)


def for_display(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": displayed(m["content"])} for m in messages]


def message_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, list):
        return "".join(message_text(part) for part in content)
    return ""


def conversation(history: list[dict] | None) -> list[dict]:
    """A column's chat history as plain {"role", "content"} turns."""
    return [{"role": m["role"], "content": html.unescape(message_text(m["content"]))} for m in history or []]


def answer_ordinal(history: list[dict], index: int) -> int:
    """Which answer (0 = the first) the message at `index` is: user and assistant turns alternate."""
    return sum(1 for m in history[:index] if m["role"] == "assistant")
