"""Prompt formats: plain completion for base models, Gemma's chat turns for instruction-tuned variants."""

from __future__ import annotations

from playground.errors import GenerationError

ROLES = ("user", "assistant")
END_OF_TURN = "<end_of_turn>"  # Gemma's chat turn end; chat variants stop there
CONTROL_TOKENS = ("<start_of_turn>", END_OF_TURN, "<bos>", "<eos>", "<pad>")


def neutral(text: str) -> str:
    """Text with Gemma's control-token strings defused ("<end_of_turn>" -> "‹end_of_turn>"), so that typed text
    cannot end a turn or speak as the model: the tokenizer would read them as the real tokens."""
    for token in CONTROL_TOKENS:
        text = text.replace(token, "\u2039" + token[1:])
    return text


def render(messages: list[dict], fmt: str, system: str = "") -> str:
    """The exact text a variant of format `fmt` ("plain" or "chat") sees for `messages`.

    `messages` alternate user/assistant turns ({"role", "content"}) and end with the user's turn.
    The tokenizer adds the beginning-of-sequence token, so it is not part of the text.
    """
    _check(messages)
    if fmt == "plain":
        return render_plain(messages, system)
    if fmt == "chat":
        return render_gemma_chat(messages, system)
    raise GenerationError(f"unknown prompt format {fmt!r}; use 'plain' or 'chat'")


def render_plain(messages: list[dict], system: str = "") -> str:
    """A base model continues text: earlier turns are simply the text so far."""
    parts = [system.strip()] if system.strip() else []
    parts += [neutral(m["content"].strip()) for m in messages]
    return "\n\n".join(parts)


def render_gemma_chat(messages: list[dict], system: str = "") -> str:
    """Gemma's turn format. It has no system role: the system text opens the first user turn, as Gemma's template does."""
    text = ""
    for index, message in enumerate(messages):
        content = neutral(message["content"].strip())
        if index == 0 and system.strip():
            content = f"{system.strip()}\n\n{content}"
        role = "model" if message["role"] == "assistant" else "user"
        text += f"<start_of_turn>{role}\n{content}{END_OF_TURN}\n"
    return text + "<start_of_turn>model\n"


def _check(messages: list[dict]) -> None:
    if not messages:
        raise GenerationError("there is no message to answer; type a prompt")
    for index, message in enumerate(messages):
        expected = ROLES[index % 2]
        if message.get("role") != expected or not isinstance(message.get("content"), str):
            raise GenerationError(
                f"message #{index + 1} should be a {expected} turn with text, got role {message.get('role')!r}"
            )
    if messages[-1]["role"] != "user":
        raise GenerationError("the conversation must end with the user's message")
