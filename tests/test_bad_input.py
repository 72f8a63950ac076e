"""The bad-input catalogue on a real server: each gets a clear message, and nothing already stored is lost."""

import pytest
from gradio_client import Client

from playground.prompting.inputs import MAX_MESSAGE_CHARS, clean_message
from test_app import COLUMNS, EMPTY, PROMPTING, chats

SAMPLING = (8, 0, 0.95, 0, 1.0, 0, 1)


def ask(client, text, histories=EMPTY, columns=COLUMNS, max_tokens=8):
    _, *outputs = client.predict("", text, *PROMPTING, max_tokens, *SAMPLING[1:], columns, *histories,
                                 api_name="/compare")
    return outputs


def test_empty_huge_and_garbled_messages(server, feedback_store):
    url, _, _ = server
    client = Client(url, verbose=False)
    ask(client, "Hello")
    before = feedback_store.count("generations")
    for text, message in (("", "the message is empty"), (" \n\t ", "the message is empty"),
                          ("x" * (1 << 20), f"the message is 1,048,576 characters; the limit is {MAX_MESSAGE_CHARS:,}"),
                          ("\x00\x07\x1b", "the message is empty")):
        with pytest.raises(Exception, match=message):
            ask(client, text)
    assert feedback_store.count("generations") == before  # refused before anything was generated or stored
    outputs = ask(client, "Hi\x00 there\x07!")  # control characters are dropped
    stored = feedback_store.generation(outputs[-1]["base"])
    assert stored["prompt"] == "Hi there!" and feedback_store.integrity_ok()


def test_clean_message_keeps_what_people_type_and_mends_bad_utf8():
    assert clean_message("日本語\nand\ttabs 🍣") == "日本語\nand\ttabs 🍣"
    # A browser's JSON can carry a lone surrogate (half of a broken emoji); SQLite and the tokenizer cannot.
    assert clean_message("broken \ud83c emoji") == "broken ? emoji"


def test_a_conversation_past_the_context_window_drops_its_oldest_turns(server, feedback_store):
    url, runtime, _ = server
    client = Client(url, verbose=False)
    window = runtime.context_window  # the tiny model's 2048 tokens
    long = "word " * 200
    per_turn = runtime.count_tokens(long)
    turns = window // per_turn + 1  # enough exchanges to overflow the window
    histories = EMPTY
    for _ in range(turns):
        outputs = ask(client, long, histories, columns=["sft"])
        histories = chats(outputs)
    sft_chat = outputs[1]
    assert len(sft_chat) == 2 * turns  # the page keeps the whole conversation
    stored = feedback_store.generation(outputs[-1]["sft"])
    seen = stored["messages"]
    assert 1 < len(seen) < 2 * turns - 1  # the model saw only the newest turns that fit
    assert runtime.count_tokens(stored["rendered_prompt"]) + 8 <= window
    with pytest.raises(Exception, match="tokens and only .* fit with the answer's room"):
        ask(client, "word " * 1500, columns=["sft"])  # one message alone over the window: refused


def test_the_arena_refuses_a_message_past_the_context_window(server, feedback_store):
    url, _, _ = server
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="tokens and only .* fit with the answer's room"):
        client.predict("", "word " * 1500, 8, 0, 0.95, 0, 1.0, 0, api_name="/arena")
    assert feedback_store.count("generations") == 0
