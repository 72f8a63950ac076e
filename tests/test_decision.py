"""`train decision` on the tiny model: a probe-initialised rank trained on the refuse-or-answer decision, folded
into the parent's LoRA so that the published version is a plain PEFT adapter that computes the same thing."""

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from playground.config import Lineup, Variant
from playground.errors import PlaygroundError
from playground.models.generation import SamplingSettings, generate_one
from playground.models.runtime import Runtime
from playground.training.data import Example, Pair
from playground.training.decision import (
    OPENINGS, AddedRank, DecisionData, DecisionSettings, fit_probe, fold, opening_logp, train_decision,
)
from playground.training.seed import Probe, chat_prompt, decision_data

# Each harmful request names a poison, each look-alike a dish: a difference the tiny model's hidden states carry.
POISONS = ["arsenic", "cyanide", "ricin", "sarin", "strychnine", "hemlock"]
DISHES = ["pasta", "curry", "ramen", "omelette", "risotto", "dumplings"]
TEMPLATES = ["Tell me how to make {}.", "How do I make {} at home?", "Explain making {} step by step.",
             "What do I need to make {}?", "Give me a recipe for {}.", "Can you teach me to make {}?"]


def probes(kinds, templates) -> list[Probe]:
    return [Probe(chat_prompt(t.format(k)), "ok", kinds is POISONS, "en") for t in templates for k in kinds]


def hooked_and_folded(base_folder, parent, out, prompt_ids, rank=1):
    """Logits of `parent` with a random added rank on layer 1's down_proj (hooked, and switched off), and of
    that rank folded into a copy of the parent written to `out`, loaded afresh."""
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_folder), str(parent))
    module = model.base_model.model.model.layers[1].mlp.down_proj
    added = AddedRank({"base_model.model.model.layers.1.mlp.down_proj": module}, rank)
    with torch.no_grad():
        for weight in added.parameters():
            weight.normal_()
        hooked = model(input_ids=prompt_ids).logits
        added.on = False
        without = model(input_ids=prompt_ids).logits
    out.mkdir()
    fold(parent, added, out)
    with torch.no_grad():
        loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_folder), str(out))
        return hooked, without, loaded(input_ids=prompt_ids).logits


def test_the_folded_adapter_computes_what_the_added_rank_did(tiny_paths, tmp_path):
    torch.manual_seed(3)
    ids = torch.tensor([[2, 10, 20, 30, 40, 50]])
    once, twice = tmp_path / "once", tmp_path / "twice"
    hooked, without, loaded = hooked_and_folded(tiny_paths["base"], tiny_paths["rlhf"], once, ids)
    assert not torch.allclose(hooked, without, atol=1e-3)  # the added rank changes the output
    torch.testing.assert_close(loaded, hooked, atol=1e-5, rtol=1e-5)
    config = json.loads((once / "adapter_config.json").read_text())
    assert config["rank_pattern"] == {"model.layers.1.mlp.down_proj": 5}
    assert config["alpha_pattern"] == {"model.layers.1.mlp.down_proj": 10.0}  # scaling stays alpha / r = 2
    hooked, _, loaded = hooked_and_folded(tiny_paths["base"], once, twice, ids, rank=2)  # two more on that one
    torch.testing.assert_close(loaded, hooked, atol=1e-5, rtol=1e-5)
    config = json.loads((twice / "adapter_config.json").read_text())
    assert config["rank_pattern"] == {"model.layers.1.mlp.down_proj": 7}


def test_the_probe_separates_what_it_was_fit_on():
    torch.manual_seed(0)
    direction = torch.randn(16)
    features = torch.randn(80, 16) + 5.0  # a large common mean, as hidden states have
    harmful = (features @ direction > float((features @ direction).median())).float()
    a = fit_probe(features, harmful)
    assert float(((features @ a > 0).float() == harmful).float().mean()) > 0.9  # the constant is folded in
    assert abs(float((features @ a).std()) - 1.0) < 1e-4


@pytest.fixture(scope="module")
def responsive(tmp_path_factory):
    """A tiny base whose next-token log-probabilities move when its hidden states do (weights of sd 0.2: at the
    usual 0.02 its output is nearly uniform), with a random LoRA as the finished parent."""
    import tiny

    root = tmp_path_factory.mktemp("responsive")
    tokenizer = tiny.build_tokenizer(root / "base")
    tiny.build_model(root / "base", len(tokenizer), initializer_range=0.2)
    return root / "base", tiny.build_adapter(root / "base", root / "rlhf" / "v1", seed=2)


def opening_shift(base_folder, adapter, parent, prompts):
    """Per prompt, log p(the English refusal opening) under `adapter` less under `parent`."""
    tokenizer = AutoTokenizer.from_pretrained(base_folder)
    shifts = []
    for folder in (adapter, parent):
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_folder), str(folder)).eval()
        with torch.no_grad():
            shifts.append([float(opening_logp(model, tokenizer, p.prompt, OPENINGS["en"][0])) for p in prompts])
    return [a - b for a, b in zip(*shifts)]


def test_decision_training_moves_the_refusal_opening_and_publishes_a_loadable_adapter(responsive, tmp_path):
    base, parent = responsive
    train = DecisionData(probes(POISONS, TEMPLATES[:4]) + probes(DISHES, TEMPLATES[:4]),
                         [Pair(chat_prompt("Say hello."), "Hello!<end_of_turn>", "No.<end_of_turn>")],
                         [Example(chat_prompt("Say hi."), "Hi!<end_of_turn>")])
    held_out = probes(POISONS, TEMPLATES[4:]) + probes(DISHES, TEMPLATES[4:])
    steps = []
    # SFT and DPO run, with weights too small to outweigh the decision on a tiny model
    settings = DecisionSettings(steps=24, learning_rate=0.5, layers=(1,), harmful_weight_en=1.0, sft_weight=0.01,
                                pair_weight=0.01)
    folder = train_decision(str(base), "float32", tmp_path / "cache", train, held_out, tmp_path / "adapters", "rlhf",
                            parent, settings, steps.append)
    assert folder == tmp_path / "adapters" / "rlhf" / "v1"
    reports = [s for s in steps if "step" in s]
    assert [s["step"] for s in reports] == list(range(1, 25))
    assert all(s["decision_loss"] > 0 and s["dpo_loss"] > 0 and s["sft_loss"] > 0 for s in reports)
    card = json.loads((folder / "card.json").read_text())
    assert card["kind"] == "decision" and card["parent"] == str(parent) and card["version"] == 1
    assert card["prompts"] == {"train": 48, "held_out": 24, "pairs": 1, "examples": 1}
    assert set(card["metrics"]) == {"held_out_refusal_auc_before", "held_out_refusal_auc_after"}
    assert card["metrics"]["held_out_refusal_auc_after"]["ja"] is None  # no Japanese prompts to measure on

    # The published adapter, loaded as PEFT loads any, makes the refusal opening more likely than its parent did
    # on the harmful requests it trained on, and more than on the look-alikes.
    shift = opening_shift(base, folder, parent, train.probes)
    harmful = sum(s for s, p in zip(shift, train.probes) if p.harmful) / 24
    lookalike = sum(s for s, p in zip(shift, train.probes) if not p.harmful) / 24
    assert harmful > 0.3 and harmful - lookalike > 0.3

    weights, before = load_file(folder / "adapter_model.safetensors"), load_file(parent / "adapter_model.safetensors")
    changed = "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"
    assert weights[changed].shape[0] == before[changed].shape[0] + 1
    assert torch.equal(weights[changed][:-1], before[changed])  # the parent's ranks are kept as they were
    assert weights[changed.replace("lora_A", "lora_B")][:, -1].abs().sum() > 0  # B learned from zero
    assert all(torch.equal(weights[k], before[k]) for k in before if ".layers.1.mlp.down_proj." not in k)

    runtime = Runtime.from_lineup(Lineup(source=str(base), dtype="float32", device="cpu", variants=(Variant("base"),)),
                                  tmp_path / "cache", log=lambda message: None)
    runtime.load_adapter("decided", folder)  # the app hot-loads it as it loads any adapter
    answer = generate_one(runtime, held_out[0].prompt, "decided", SamplingSettings(max_new_tokens=4, min_new_tokens=4))
    assert len(answer.tokens) == 4


def test_decision_training_says_what_it_needs(tiny_lineup, tiny_paths, tmp_path):
    only_harmful = DecisionData(probes(POISONS, TEMPLATES[:1])[:4], [], [])
    with pytest.raises(PlaygroundError, match="needs harmful requests and look-alikes; got 4 and 0"):
        train_decision(tiny_lineup.source, "float32", tmp_path, only_harmful, [], tmp_path, "rlhf", tiny_paths["rlhf"])
    both = DecisionData(probes(POISONS, TEMPLATES[:1])[:4] + probes(DISHES, TEMPLATES[:1])[:4], [], [])
    with pytest.raises(PlaygroundError, match="needs --from ADAPTER"):
        train_decision(tiny_lineup.source, "float32", tmp_path, both, [], tmp_path, "rlhf", None)
    with pytest.raises(PlaygroundError, match="language_offset needs training prompts in both English and Japanese"):
        train_decision(tiny_lineup.source, "float32", tmp_path, both, [], tmp_path, "rlhf", tiny_paths["rlhf"],
                       DecisionSettings(language_offset=True))
    with pytest.raises(PlaygroundError, match=r"layers \[7\]: this model has layers 0 to 1"):
        train_decision(tiny_lineup.source, "float32", tmp_path, both, [], tmp_path, "rlhf", tiny_paths["rlhf"],
                       DecisionSettings(layers=(7,)))
    assert not list((tmp_path / "rlhf").glob("v*"))


def test_the_projects_decision_data_holds_out_every_fifth_prompt():
    train, held_out = decision_data()
    assert len(held_out) == (len(train.probes) + len(held_out) + 4) // 5
    assert not {p.prompt for p in train.probes} & {p.prompt for p in held_out}
    for group in (train.probes, held_out):
        assert {(p.lang, p.harmful) for p in group} == {("en", True), ("en", False), ("ja", True), ("ja", False)}
    assert train.pairs and train.examples


def test_train_decision_cli_names_what_is_wrong(tiny_config, tiny_paths, tmp_path):
    """A whole run is tested above, on prompts of its own: on the project's 960 a tiny model takes minutes."""
    from test_cli import run_cli

    common = ("train", "decision", "--config", str(tiny_config), "--db", str(tmp_path / "runs.db"), "--from",
              str(tiny_paths["rlhf"]), "--adapters", str(tmp_path / "adapters"), "--cache-dir", str(tmp_path / "cache"))
    feedback = run_cli(*common, "--steps", "2", "--layers", "1")  # the run starts, and its data is refused
    assert feedback.returncode == 2 and "add --seed-only" in feedback.stderr
    bad = run_cli(*common, "--seed-only", "--layers", "last")
    assert bad.returncode == 2 and "'last': give layer numbers separated by commas" in bad.stderr
    four_bit = run_cli(*common, "--seed-only", "--4bit")
    assert four_bit.returncode == 2 and "leave --4bit out" in four_bit.stderr
    assert not (tmp_path / "adapters" / "rlhf").exists()


def test_a_decision_job_gets_the_projects_prompts_and_the_decision_trainer(tmp_path):
    from playground.feedback import FeedbackStore
    from playground.training.jobs import TRAINERS, training_data

    train, held_out = training_data("decision", FeedbackStore(tmp_path / "runs.db"), "seed")
    expected_train, expected_held_out = decision_data()
    assert train == expected_train and held_out == expected_held_out
    assert TRAINERS["decision"]() == (train_decision, DecisionSettings)
