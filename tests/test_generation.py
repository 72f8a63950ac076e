"""Side-by-side generation: one batched call, each row streamed to its own column, equal to each row alone."""

import threading

import pytest
import torch

from playground.errors import AdapterError, GenerationError
from playground.models.generation import (
    SamplingSettings,
    _ColumnStreamer,
    generate_one,
    stop_token_ids,
    stream_side_by_side,
)
from playground.prompting import render

ADAPTERS = [None, "sft", "rlhf"]
GREEDY = SamplingSettings(max_new_tokens=16)


def last(stream):
    final = None
    for final in stream:
        pass
    return final


def test_side_by_side_equals_each_variant_alone(runtime):
    prompt = "The capital of Japan is"
    together = last(stream_side_by_side(runtime, [prompt] * 3, ADAPTERS, GREEDY))
    alone = [generate_one(runtime, prompt, name, GREEDY) for name in ADAPTERS]
    assert [c.tokens for c in together] == [c.tokens for c in alone]
    assert len({tuple(c.tokens) for c in together}) == 3  # three different answers
    assert all(c.tokens for c in together)


def test_rows_of_different_lengths_equal_each_alone(runtime, tiny_lineup):
    """Plain and chat prompts differ in length: left padding must not change any row's answer."""
    message = [{"role": "user", "content": "日本の首都は東京です。フランスの首都は"}]
    prompts = [render(message, v.format) for v in tiny_lineup.variants]
    assert len({len(runtime.tokenizer(p)["input_ids"]) for p in prompts}) > 1
    together = last(stream_side_by_side(runtime, prompts, ADAPTERS, GREEDY))
    alone = [generate_one(runtime, p, name, GREEDY) for p, name in zip(prompts, ADAPTERS)]
    assert [c.tokens for c in together] == [c.tokens for c in alone]
    assert [c.text for c in together] == [c.text for c in alone]


def test_every_column_streams_one_token_per_step(runtime):
    settings = SamplingSettings(max_new_tokens=10, min_new_tokens=10)
    updates = list(stream_side_by_side(runtime, ["Hello"] * 3, ADAPTERS, settings))
    counts = [[len(c.tokens) for c in update] for update in updates]
    assert counts[0] == [1, 1, 1]
    assert counts[-1] == [10, 10, 10]
    assert all(b == [n + 1 for n in a] for a, b in zip(counts[:-2], counts[1:-1]))  # one more each step
    assert [c.finish for c in updates[-1]] == ["length"] * 3
    assert all(c.first_token_s is not None and c.first_token_s > 0 for c in updates[-1])


def test_stop_string_ends_only_its_row(runtime):
    reference = generate_one(runtime, "Hello", "sft", SamplingSettings(max_new_tokens=12, min_new_tokens=12))
    stop = runtime.tokenizer.decode(reference.tokens[3:5])  # text the sft row will certainly produce
    assert stop.strip()
    settings = SamplingSettings(max_new_tokens=12, min_new_tokens=12, stop=(stop,))
    base, sft, _ = last(stream_side_by_side(runtime, ["Hello"] * 3, ADAPTERS, settings))
    assert sft.finish == "stop"
    assert stop not in sft.text
    assert reference.text.startswith(sft.text)
    assert len(sft.tokens) < 12
    if stop not in runtime.tokenizer.decode(base.tokens):
        assert base.finish == "length" and len(base.tokens) == 12


def test_end_of_sequence_and_end_of_turn_end_a_row_and_later_tokens_are_ignored(runtime):
    tokenizer = runtime.tokenizer
    eos, turn_end = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert stop_token_ids(tokenizer) == {eos, turn_end}
    word = tokenizer("Paris", add_special_tokens=False)["input_ids"][0]
    streamer = _ColumnStreamer(tokenizer, 3, {eos, turn_end}, (), started=0.0)
    streamer.put(torch.zeros(3, 4, dtype=torch.long))  # the prompt: ignored
    streamer.put(torch.tensor([word, eos, word]))
    streamer.put(torch.tensor([turn_end, word, word]))  # row 1 ended: generate pads it, we ignore it
    first, second, third = streamer.snapshot()
    assert (first.tokens, first.finish) == ([word], "eos")
    assert (second.tokens, second.finish) == ([], "eos")
    assert (third.tokens, third.finish) == ([word, word], None)


def test_cancel_stops_every_row(runtime):
    cancel = threading.Event()
    settings = SamplingSettings(max_new_tokens=200, min_new_tokens=200)
    stream = stream_side_by_side(runtime, ["Hello"] * 3, ADAPTERS, settings, cancel)
    next(stream)
    cancel.set()
    final = last(stream)
    assert all(c.finish == "cancelled" for c in final)
    assert all(len(c.tokens) < 200 for c in final)


def test_closing_the_stream_stops_the_generation(runtime):
    from playground.models import model_thread

    forwards = []
    hook = runtime.base.register_forward_hook(lambda *args: forwards.append(1))
    stream = stream_side_by_side(runtime, ["Hello"], [None], SamplingSettings(max_new_tokens=2000, min_new_tokens=2000))
    next(stream)
    stream.close()  # what a browser that goes away does
    model_thread.call(lambda: None)  # returns once the abandoned generation has ended
    hook.remove()
    assert len(forwards) < 100  # it stopped within a few steps, not after 2000


def test_sampling_is_reproducible_with_a_seed(runtime):
    settings = SamplingSettings(max_new_tokens=16, min_new_tokens=16, temperature=1.5, top_k=50, top_p=0.95, seed=7)
    first = last(stream_side_by_side(runtime, ["Hello"] * 3, ADAPTERS, settings))
    again = last(stream_side_by_side(runtime, ["Hello"] * 3, ADAPTERS, settings))
    other = last(stream_side_by_side(runtime, ["Hello"] * 3, ADAPTERS, SamplingSettings(**{**settings.__dict__, "seed": 8})))
    greedy = last(stream_side_by_side(runtime, ["Hello"] * 3, ADAPTERS, SamplingSettings(max_new_tokens=16, min_new_tokens=16)))
    assert [c.tokens for c in first] == [c.tokens for c in again]
    assert [c.tokens for c in first] != [c.tokens for c in other]
    assert [c.tokens for c in first] != [c.tokens for c in greedy]


@pytest.mark.parametrize(
    "settings, message",
    [
        (SamplingSettings(max_new_tokens=0), "max_new_tokens = 0 is out of range"),
        (SamplingSettings(temperature=-1), "temperature = -1 is out of range; use a value between 0"),
        (SamplingSettings(top_p=0), "top_p = 0 is out of range"),
        (SamplingSettings(top_k=-3), "top_k = -3"),
        (SamplingSettings(repetition_penalty=9), "repetition_penalty = 9"),
        (SamplingSettings(stop=("",)), "empty stop string"),
    ],
)
def test_bad_settings_name_the_value(runtime, settings, message):
    with pytest.raises(GenerationError, match=message):
        generate_one(runtime, "Hello", None, settings)


def test_bad_requests(runtime):
    with pytest.raises(GenerationError, match="the prompt is empty"):
        generate_one(runtime, "   ", None)
    with pytest.raises(AdapterError, match="adapter 'dpo' is not loaded"):
        generate_one(runtime, "Hello", "dpo")
    with pytest.raises(GenerationError, match="one prompt per column"):
        last(stream_side_by_side(runtime, ["a", "b"], [None], GREEDY))


def test_stacked_lora_equals_peft_mixed_batches(runtime, tiny_lineup):
    """Our stacked-LoRA batch path against PEFT's own adapter_names path, row by row."""
    message = [{"role": "user", "content": "Hello, how can I help"}]
    prompts = [render(message, v.format) for v in tiny_lineup.variants] + ["The capital"]
    adapters = [*ADAPTERS, "sft"]  # an adapter on two rows, with different prompts
    settings = SamplingSettings(max_new_tokens=16, min_new_tokens=16)
    stacked = last(stream_side_by_side(runtime, prompts, adapters, settings))
    runtime.stacked = False
    peft = last(stream_side_by_side(runtime, prompts, adapters, settings))
    assert [c.tokens for c in stacked] == [c.tokens for c in peft]
    assert len({tuple(c.tokens) for c in stacked}) == 4


def test_stacked_lora_leaves_peft_layers_as_they_were(runtime):
    from playground.models.stacked_lora import stacked_lora

    layer = runtime.model.base_model.model.model.layers[0].mlp.down_proj
    x = torch.randn(3, 2, layer.in_features)
    with torch.no_grad():
        before = layer(x)
        with stacked_lora(runtime.model, ["__base__", "sft", "rlhf"]):
            inside = layer(x)
        after = layer(x)
    assert torch.equal(before, after)  # PEFT's forward is back
    assert torch.allclose(inside[0], layer.base_layer(x[0]))  # row 0: the bare base
    assert not torch.allclose(inside[1], layer.base_layer(x[1]))  # row 1: the sft adapter changes it
