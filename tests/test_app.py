"""The first page on a real Gradio server: one prompt streams into every column from one event; Stop works."""

import socket
import time

import pytest
from gradio_client import Client

from playground.models.generation import SamplingSettings, generate_one
from playground.prompting import render
from playground.ui.app import build_app

SETTINGS = (24, 0, 0.95, 0, 1.0, 0)  # max new tokens, temperature, top p, top k, repetition penalty, seed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(runtime, tiny_lineup):
    app = build_app(runtime, tiny_lineup)
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", runtime, tiny_lineup
    app.close()


def test_one_prompt_streams_into_every_column(server):
    url, runtime, lineup = server
    client = Client(url, verbose=False)
    job = client.submit("日本の首都は", *SETTINGS, [], [], [], api_name="/compare")
    prompt_box, *columns = job.result(timeout=120)
    assert prompt_box == ""  # the prompt box is cleared for the next message
    assert len(job.outputs()) > 2  # streamed: many partial updates, not one answer at the end
    settings = SamplingSettings(max_new_tokens=24, repetition_penalty=1.0)
    for column, variant in zip(columns, lineup.variants):
        prompt = render([{"role": "user", "content": "日本の首都は"}], variant.format)
        expected = generate_one(runtime, prompt, variant.name if variant.adapter else None, settings).text
        user, answer = column
        assert user["role"] == "user" and answer["role"] == "assistant"
        assert answer["content"][0]["text"] == expected.strip()  # Gradio trims the displayed message


def test_second_turn_carries_each_columns_history(server):
    url, runtime, lineup = server
    client = Client(url, verbose=False)
    _, *first = client.predict("Hello", *SETTINGS, [], [], [], api_name="/compare")
    _, *second = client.predict("And then?", *SETTINGS, *first, api_name="/compare")
    assert all(len(column) == 4 for column in second)
    sft_history = [{"role": m["role"], "content": m["content"][0]["text"]} for m in second[1][:3]]
    expected = generate_one(
        runtime, render(sft_history, "chat"), "sft", SamplingSettings(max_new_tokens=24, repetition_penalty=1.0)
    ).text
    assert second[1][3]["content"][0]["text"] == expected.strip()


def test_stop_ends_the_generation(server):
    url, runtime, _ = server
    client = Client(url, verbose=False)
    job = client.submit("Hello", 512, 0, 0.95, 0, 1.0, 0, [], [], [], api_name="/compare")
    deadline = time.time() + 60
    while not job.outputs() and time.time() < deadline:
        time.sleep(0.05)
    client.predict(api_name="/stop")
    _, *columns = job.result(timeout=60)
    answers = [column[1]["content"][0]["text"] for column in columns]
    lengths = [len(runtime.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers]
    assert max(lengths) < 400  # stopped long before the 512-token cap


def test_bad_settings_show_a_message_not_a_traceback(server):
    url, _, _ = server
    client = Client(url, verbose=False)
    with pytest.raises(Exception) as error:
        client.predict("   ", *SETTINGS, [], [], [], api_name="/compare")
    assert "the prompt is empty" in str(error.value)
