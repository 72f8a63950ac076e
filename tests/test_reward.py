"""The reward model: real TRL RewardTrainer on the tiny model, scores in the running app, best-of-n decoding."""

import json

import pytest
import torch
from gradio_client import Client
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from playground.errors import AdapterError, GenerationError
from playground.models.generation import SamplingSettings, best_of_n, generate_one
from playground.training.reward import score
from test_app import COLUMNS, EMPTY, PROMPTING, SLOTS

PROMPT = "<start_of_turn>user\nQuestion number 7?<end_of_turn>\n<start_of_turn>model\n"
POLITE, CURT = "Thank you, here is the answer.", "No."


def test_the_reward_model_learns_the_preference_and_saves_lora_plus_a_head(tiny_reward):
    card = json.loads((tiny_reward / "card.json").read_text())
    assert card["kind"] == "reward" and card["parent"] is None
    metrics = card["metrics"]
    assert metrics["held_out_reward_accuracy_after"] == 1.0
    assert metrics["held_out_reward_accuracy_after"] > metrics["held_out_reward_accuracy_before"]
    weights = load_file(tiny_reward / "adapter_model.safetensors")
    assert [k for k in weights if ".lora_" not in k] == ["base_model.model.score.weight"]  # LoRA + the head only
    assert weights["base_model.model.score.weight"].shape[0] == 1  # one output: the reward


def test_runtime_scores_equal_the_trained_classifier_and_leave_generation_alone(runtime, tiny_paths, tiny_reward):
    greedy = SamplingSettings(max_new_tokens=8, min_new_tokens=8)
    before = [generate_one(runtime, PROMPT, adapter, greedy).tokens for adapter in (None, "sft", "rlhf")]
    with pytest.raises(AdapterError, match="no reward model is loaded"):
        runtime.reward_scores(PROMPT, [POLITE])
    runtime.load_reward_model(tiny_reward)
    scores = runtime.reward_scores(PROMPT, [POLITE + "<end_of_turn>", CURT + "<end_of_turn>"])
    assert scores[0] > scores[1]

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_paths["base"]))
    classifier = AutoModelForSequenceClassification.from_pretrained(str(tiny_paths["base"]), num_labels=1,
                                                                    dtype=torch.float32)
    classifier.config.pad_token_id = tokenizer.pad_token_id
    classifier = PeftModel.from_pretrained(classifier, str(tiny_reward)).eval()
    expected = [score(classifier, tokenizer, PROMPT, c) for c in (POLITE + "<end_of_turn>", CURT + "<end_of_turn>")]
    assert scores == pytest.approx(expected, abs=1e-4)  # batched and left-padded, still the same scores

    after = [generate_one(runtime, PROMPT, adapter, greedy).tokens for adapter in (None, "sft", "rlhf")]
    assert after == before  # the reward adapter never leaks into a column
    runtime.unload_adapter("sft")
    runtime.unload_adapter("rlhf")  # the reward adapter alone remains: still no effect on the base
    assert generate_one(runtime, PROMPT, None, greedy).tokens == before[0]
    assert runtime.reward_scores(PROMPT, [POLITE + "<end_of_turn>"])[0] == pytest.approx(expected[0], abs=1e-4)


def test_a_causal_adapter_is_not_taken_for_a_reward_model(runtime, tiny_paths):
    with pytest.raises(AdapterError, match="it is not a reward model"):
        runtime.load_reward_model(tiny_paths["sft"])


def test_best_of_n_keeps_the_highest_scored_sample(runtime, tiny_reward):
    with pytest.raises(GenerationError, match="best-of-n needs a reward model"):
        best_of_n(runtime, PROMPT, "sft", 4, PROMPT)
    runtime.load_reward_model(tiny_reward)
    pick = best_of_n(runtime, PROMPT, "sft", 4, PROMPT, SamplingSettings(max_new_tokens=6, seed=3))  # greedy: sampled
    assert len(pick.candidates) == len(pick.scores) == 4
    assert len({tuple(c.tokens) for c in pick.candidates}) > 1  # sampled, not four copies of one greedy answer
    assert pick.best is pick.candidates[pick.scores.index(max(pick.scores))]
    assert runtime.reward_scores(PROMPT, [pick.best.text]) == pytest.approx([max(pick.scores)], abs=1e-4)


def test_compare_shows_rewards_and_decodes_best_of_n(server, tiny_reward, feedback_store):
    url, runtime, lineup = server
    client = Client(url, verbose=False)
    sampling = (8, 0, 0.95, 0, 1.0, 0)
    with pytest.raises(Exception, match="Best-of-n needs a reward model"):
        client.predict("", "Hello", *PROMPTING, *sampling, 3, COLUMNS, *EMPTY, api_name="/compare")
    runtime.load_reward_model(tiny_reward)
    _, *outputs = client.predict("", "Hello", *PROMPTING, *sampling, 3, COLUMNS, *EMPTY, api_name="/compare")
    summary, stored = outputs[2 * SLOTS], outputs[2 * SLOTS + 1]
    assert str(tiny_reward) in summary and summary.count("(best of 3: ") == 3
    assert set(stored) == set(COLUMNS)
    for variant in COLUMNS:
        line = next(line for line in summary.splitlines() if line.startswith(f"- {variant}:"))
        candidates = [float(x) for x in line.split("(best of 3: ")[1].rstrip(")").split(", ")]
        shown = float(line.split("**")[1])
        assert shown == max(candidates)
        kept = feedback_store.generation(stored[variant])["response"]  # the answer shown and stored is the best
        judged = "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"
        assert runtime.reward_scores(judged, [kept])[0] == pytest.approx(shown, abs=0.01)
