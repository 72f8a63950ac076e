"""The first page on a real Gradio server: one prompt streams into every column from one event; Stop works."""

import time

import pytest
from gradio_client import Client

from playground.models.generation import SamplingSettings, generate_one
from playground.prompting import render
from playground.prompting.modes import PromptSpec, build_prompt
from playground.ui.live import SPARE_SLOTS

PROMPTING = ("zero", "", 3, "en")  # mode, task bank (none), k, language
SAMPLING = (24, 0, 0.95, 0, 1.0, 0, 1)  # max new tokens, temperature, top p, top k, repetition penalty, seed, n
COLUMNS = ["base", "sft", "rlhf"]
SLOTS = len(COLUMNS) + SPARE_SLOTS  # every column slot takes its history, the spare ones too
EMPTY = [[]] * SLOTS


def chats(outputs):
    """The column histories from a /compare result, to send back (a slot left as it was reads as an update)."""
    return [c if isinstance(c, list) else [] for c in outputs[:SLOTS]]
SAMPLING = SAMPLING + (COLUMNS,)  # and the columns chosen
SETTINGS = PROMPTING + SAMPLING


def test_one_prompt_streams_into_every_column(server):
    url, runtime, lineup = server
    client = Client(url, verbose=False)
    job = client.submit("", "日本の首都は", *SETTINGS, *EMPTY, api_name="/compare")
    prompt_box, *outputs = job.result(timeout=120)
    columns, panels = outputs[:3], outputs[SLOTS:2 * SLOTS]
    assert prompt_box == ""  # the prompt box is cleared for the next message
    assert len(job.outputs()) > 2  # streamed: many partial updates, not one answer at the end
    settings = SamplingSettings(max_new_tokens=24, repetition_penalty=1.0)
    for column, variant in zip(columns, lineup.variants):
        prompt = render([{"role": "user", "content": "日本の首都は"}], variant.format)
        expected = generate_one(runtime, prompt, variant.name if variant.adapter else None, settings).text
        user, answer = column
        assert user["role"] == "user" and answer["role"] == "assistant"
        assert answer["content"][0]["text"] == expected.strip()  # Gradio trims the displayed message
    assert panels[0] == "<bos>日本の首都は"  # the exact input, special tokens shown
    assert panels[1] == "<bos><start_of_turn>user\n日本の首都は<end_of_turn>\n<start_of_turn>model\n"


def test_few_shot_task_reaches_every_column_and_shows_its_prompt(server, toy_bank):
    url, runtime, lineup = server
    client = Client(url, verbose=False)
    _, *outputs = client.predict("", "4+4", "few", "toy", 2, "en", *SAMPLING, *EMPTY, api_name="/compare")
    columns, panels = outputs[:3], outputs[SLOTS:2 * SLOTS]
    for column, panel, variant in zip(columns, panels, lineup.variants):
        prompt = build_prompt(PromptSpec(mode="few", k=2), toy_bank, "4+4", variant.format)
        assert panel == "<bos>" + prompt
        assert "Q: 2+3" in panel or "2+3<end_of_turn>" in panel  # the second worked example is there
        expected = generate_one(
            runtime, prompt, variant.name if variant.adapter else None,
            SamplingSettings(max_new_tokens=24, repetition_penalty=1.0, stop=("\nQ:", "\n質問:")),
        ).text
        assert column[1]["content"][0]["text"] == expected.strip()


def test_second_turn_carries_each_columns_history(server):
    url, runtime, lineup = server
    client = Client(url, verbose=False)
    _, *first = client.predict("", "Hello", *SETTINGS, *EMPTY, api_name="/compare")
    _, *second = client.predict("", "And then?", *SETTINGS, *chats(first), api_name="/compare")
    second = second[:3]
    assert all(len(column) == 4 for column in second)
    sft_history = [{"role": m["role"], "content": m["content"][0]["text"]} for m in second[1][:3]]
    expected = generate_one(
        runtime, render(sft_history, "chat"), "sft", SamplingSettings(max_new_tokens=24, repetition_penalty=1.0)
    ).text
    assert second[1][3]["content"][0]["text"] == expected.strip()


def test_stop_ends_the_generation(server):
    url, runtime, _ = server
    client = Client(url, verbose=False)
    job = client.submit("", "Hello", *PROMPTING, 512, 0, 0.95, 0, 1.0, 0, 1, COLUMNS, *EMPTY, api_name="/compare")
    deadline = time.time() + 60
    while not job.outputs() and time.time() < deadline:
        time.sleep(0.05)
    client.predict(api_name="/stop")
    _, *outputs = job.result(timeout=60)
    columns = outputs[:3]
    answers = [column[1]["content"][0]["text"] for column in columns]
    lengths = [len(runtime.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers]
    assert max(lengths) < 400  # stopped long before the 512-token cap


def test_bad_settings_show_a_message_not_a_traceback(server):
    url, _, _ = server
    client = Client(url, verbose=False)
    with pytest.raises(Exception) as error:
        client.predict("", "   ", *SETTINGS, *EMPTY, api_name="/compare")
    assert "the message is empty" in str(error.value)
    with pytest.raises(Exception) as error:
        client.predict("", "4+4", "few", "toy", 8, "en", *SAMPLING, *EMPTY, api_name="/compare")
    assert "k = 8, but the toy bank has 2 en exemplars" in str(error.value)


def test_every_answer_shown_is_stored(server, feedback_store, toy_bank):
    url, runtime, lineup = server
    client = Client(url, verbose=False)
    _, *outputs = client.predict("", "4+4", "few", "toy", 2, "en", *SAMPLING, *EMPTY, api_name="/compare")
    rows = feedback_store.query("SELECT * FROM generations ORDER BY id")
    assert [r["variant"] for r in rows] == [v.name for v in lineup.variants]
    for row, variant, column in zip(rows, lineup.variants, outputs[:3]):
        stored = feedback_store.generation(row["id"])
        assert stored["prompt"] == "4+4" and stored["messages"] == [{"role": "user", "content": "4+4"}]
        assert stored["rendered_prompt"] == build_prompt(PromptSpec(mode="few", k=2), toy_bank, "4+4", variant.format)
        assert stored["response"].strip() == column[1]["content"][0]["text"]
        assert (stored["format"], stored["prompt_mode"], stored["task"]) == (variant.format, "few", "toy")
        assert stored["adapter"] == (variant.name if variant.adapter else None)
        assert stored["adapter_version"] == (1 if variant.adapter else None)  # adapters/<name>/v1
        assert stored["base_model"] == runtime.model_id
        assert stored["params"]["k"] == 2 and stored["params"]["max_new_tokens"] == 24
        assert stored["tokens"] > 0 and stored["latency_ms"] > 0 and stored["finish"] in ("eos", "stop", "length")
    sessions = feedback_store.query("SELECT * FROM sessions")
    assert len(sessions) == 1 and rows[0]["session_id"] == sessions[0]["id"]
    client.predict("", "Hello", *SETTINGS, *chats(outputs), api_name="/compare")  # a second turn, same session
    assert feedback_store.count("generations") == 6 and feedback_store.count("sessions") == 1


def test_only_the_chosen_columns_answer(server, feedback_store):
    url, _, _ = server
    client = Client(url, verbose=False)
    _, *outputs = client.predict("", "Hello", *PROMPTING, *SAMPLING[:-1], ["base", "rlhf"], *EMPTY,
                                 api_name="/compare")
    columns, stored = outputs[:3], outputs[2 * SLOTS + 1]
    assert len(columns[0]) == 2 and len(columns[2]) == 2
    assert columns[1] == {"__type__": "update"}  # the unchosen column is left as it was
    assert sorted(stored) == ["base", "rlhf"]
    assert [r["variant"] for r in feedback_store.query("SELECT variant FROM generations")] == ["base", "rlhf"]
    with pytest.raises(Exception) as error:
        client.predict("", "Hello", *PROMPTING, *SAMPLING[:-1], [], *EMPTY, api_name="/compare")
    assert "Choose 1 to 4 columns" in str(error.value)


def test_a_script_drives_a_whole_session_through_gradio_client(server, feedback_store):
    """The flow of the browser test, by the named API endpoints only."""
    url, _, lineup = server
    client = Client(url, verbose=False)
    _, *outputs = client.predict("ben", "日本の首都は", *SETTINGS, *EMPTY, api_name="/compare")
    ids = outputs[2 * SLOTS + 1]  # {variant: generation id} of the answers just shown
    assert sorted(ids) == sorted(v.name for v in lineup.variants)
    up = client.predict(ids["rlhf"], 1, "ben", api_name="/vote")
    down = client.predict(ids["base"], -1, "ben", api_name="/vote")
    fixed = client.predict(ids["sft"], "日本の首都は東京です。", "ben", api_name="/correction")
    _, left, right, _, round_ids, *_ = client.predict("ben", "Tell me about Tokyo", *SAMPLING[:-1], api_name="/arena")
    assert left[1]["role"] == right[1]["role"] == "assistant"
    names = client.predict(round_ids["left_id"], round_ids["right_id"], "right", "ben", api_name="/arena_vote")
    assert {names["left"], names["right"]} <= {v.name for v in lineup.variants} and names["counted"]
    # Voting again on the same round, once the names are out, is kept but does not count toward the ratings.
    again = client.predict(round_ids["right_id"], round_ids["left_id"], "left", "eve", api_name="/arena_vote")
    assert not again["counted"]

    votes = feedback_store.query("SELECT id, generation_id, value, participant FROM votes ORDER BY id")
    assert votes == [
        {"id": up, "generation_id": ids["rlhf"], "value": 1, "participant": "ben"},
        {"id": down, "generation_id": ids["base"], "value": -1, "participant": "ben"},
    ]
    assert feedback_store.query("SELECT id, generation_id, text FROM corrections") == [
        {"id": fixed, "generation_id": ids["sft"], "text": "日本の首都は東京です。"}
    ]
    assert feedback_store.query("SELECT left_id, right_id, outcome, blind, participant FROM comparisons") == [
        {"left_id": round_ids["left_id"], "right_id": round_ids["right_id"], "outcome": "right", "blind": 1,
         "participant": "ben"},
        {"left_id": round_ids["right_id"], "right_id": round_ids["left_id"], "outcome": "left", "blind": 0,
         "participant": "eve"},
    ]
    from playground.feedback.ratings import leaderboard

    assert leaderboard(feedback_store).comparisons == 1 and leaderboard(feedback_store).not_blind == 1
    left_row = feedback_store.generation(round_ids["left_id"])
    assert left_row["variant"] == names["left"] and left_row["prompt"] == "Tell me about Tokyo"
    with pytest.raises(Exception) as error:
        client.predict(99999, 1, "ben", api_name="/vote")
    assert "no stored answer with id 99999" in str(error.value)
