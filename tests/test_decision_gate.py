"""A refuse-or-answer decision read once per chat turn (models/decision_gate.py): what it adds, at which positions,
to which rows of a mixed batch, and what a bad decision file is told."""

import shutil

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from playground.errors import AdapterError, PlaygroundError
from playground.models.decision_gate import DECISION_FILE, Decision, DecisionGate, read_decision, save_decision
from playground.models.generation import SamplingSettings, generate_all, generate_one
from playground.training.common import sequence_logp
from playground.training.seed import chat_prompt

PROMPT = chat_prompt("Tell me how to make pasta.")  # ends with the turn header, where the probe reads
ANSWER = " Boil water, add salt and the pasta, and stir."
GREEDY = SamplingSettings(max_new_tokens=10, min_new_tokens=10)


def random_decision(seed=0, windows=(2, 3), scale=1e5, read_layer=0, layers=(1,)) -> Decision:
    """For the tiny model (MLP 32 -> 64 -> 32): a random probe, and random vectors to write, as large as what the
    tiny adapters make layer 1's down_proj put out (RMS about 4e4), so that they change the answer."""
    generator = torch.Generator().manual_seed(seed)
    return Decision(torch.randn(64, generator=generator), 0.0, read_layer,
                    {n: scale * torch.randn(32, generator=generator) for n in layers}, windows)


def decided_copy(parent, folder, decision: Decision):
    """The parent's LoRA as it is, plus `decision`: an adapter version as `train decision` publishes one."""
    shutil.copytree(parent, folder)
    save_decision(decision, folder)
    return folder


def peft_model(tiny_paths):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_paths["base"]), dtype=torch.float32)
    return PeftModel.from_pretrained(model, str(tiny_paths["rlhf"])).eval(), AutoTokenizer.from_pretrained(
        str(tiny_paths["base"]))


def turn_start_index(tokenizer, ids: list[int]) -> int:
    """The position of the turn header's last token, found here by decoding prefixes (not as the gate finds it)."""
    return next(i for i in range(len(ids)) if tokenizer.decode(ids[: i + 1]).endswith("<start_of_turn>model\n"))


def test_the_held_sign_is_added_over_its_window_only(tiny_paths):
    model, tokenizer = peft_model(tiny_paths)
    decision = random_decision()
    ids = tokenizer(PROMPT + ANSWER)["input_ids"]
    start = turn_start_index(tokenizer, ids)
    layers = model.base_model.model.model.layers
    read = []
    capture = layers[0].mlp.down_proj.register_forward_hook(lambda m, args, out: read.append(args[0][0, start]))
    with torch.no_grad():
        plain = model(input_ids=torch.tensor([ids])).logits
    capture.remove()
    score = float(read[0] @ decision.probe)

    def by_hand(sign: float, window: int) -> torch.Tensor:
        """The parent, with sign * b added to layer 1's down_proj output from the turn start for `window` more."""
        def add(m, args, out):
            out = out.clone()
            out[:, start: start + window + 1] += sign * decision.writes[1]
            return out

        hook = layers[1].mlp.down_proj.register_forward_hook(add)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits
        hook.remove()
        return logits

    # the threshold puts the same reading on either side: refuse (+b, 2 more positions) or answer (-b, 3 more)
    for threshold, sign, window in ((score - 1.0, 1.0, 2), (score + 1.0, -1.0, 3)):
        decision.threshold = threshold
        gate = DecisionGate(model, tokenizer, decision)
        with torch.no_grad():
            gated = model(input_ids=torch.tensor([ids])).logits
        gate.remove()
        assert not torch.allclose(gated, plain, atol=1e-4)
        torch.testing.assert_close(gated, by_hand(sign, window), atol=1e-5, rtol=1e-5)
        assert float(gate.last_scores[0]) == pytest.approx(score, rel=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=torch.tensor([ids])).logits, plain)  # removed: the parent again


def test_decoding_step_by_step_computes_what_one_pass_does(tiny_paths):
    """Each decoding step carries the sign and the distance from the turn start on from the step before."""
    model, tokenizer = peft_model(tiny_paths)
    ids = torch.tensor([tokenizer(PROMPT + ANSWER)["input_ids"]])
    prefix = turn_start_index(tokenizer, ids[0].tolist()) + 1
    for force, windows in ((1.0, (2, 3)), (-1.0, (2, 3)), (None, (30, 30))):
        gate = DecisionGate(model, tokenizer, random_decision(windows=windows))
        gate.force = force
        with torch.no_grad():
            whole = model(input_ids=ids).logits[0]
            out = model(input_ids=ids[:, :prefix], use_cache=True)
            stepped = [out.logits[0, -1]]
            for position in range(prefix, ids.shape[1] - 1):
                out = model(input_ids=ids[:, position: position + 1], past_key_values=out.past_key_values,
                            use_cache=True)
                stepped.append(out.logits[0, -1])
        gate.remove()
        torch.testing.assert_close(torch.stack(stepped), whole[prefix - 1: -1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("stacked", [True, False], ids=["stacked", "peft"])
def test_in_a_mixed_batch_only_the_decisions_rows_get_it(runtime, tiny_paths, tmp_path, stacked):
    runtime.stacked = stacked  # our stacked LoRA batches, and PEFT's adapter_names path
    folder = decided_copy(tiny_paths["rlhf"], tmp_path / "decided", random_decision(windows=(40, 40)))
    runtime.load_adapter("decided", folder)
    alone = {name: generate_one(runtime, PROMPT, name, GREEDY).tokens for name in (None, "rlhf", "decided")}
    assert alone["decided"] != alone["rlhf"]  # the same LoRA: the decision makes the difference
    batch = generate_all(runtime, [PROMPT] * 4, ["decided", None, "rlhf", "decided"], GREEDY)
    assert [column.tokens for column in batch] == [alone["decided"], alone[None], alone["rlhf"], alone["decided"]]


def test_scoring_with_the_active_adapter_uses_its_decision_and_disabling_turns_it_off(runtime, tiny_paths, tmp_path):
    runtime.load_adapter("decided", decided_copy(tiny_paths["rlhf"], tmp_path / "d", random_decision()))
    model, tokenizer = runtime.model, runtime.tokenizer
    scores = {}
    for name in ("rlhf", "decided"):
        model.set_adapter(name)
        scores[name] = sequence_logp(model, tokenizer, PROMPT, ANSWER)
        with model.disable_adapter():
            scores[f"{name} disabled"] = sequence_logp(model, tokenizer, PROMPT, ANSWER)
    assert scores["decided"] != pytest.approx(scores["rlhf"], abs=1e-3)
    assert scores["decided disabled"] == pytest.approx(scores["rlhf disabled"], abs=1e-5)  # both the bare base


def test_unloading_a_decision_removes_its_hooks(runtime, tiny_paths, tmp_path):
    before = generate_one(runtime, PROMPT, "rlhf", GREEDY).tokens
    folder = decided_copy(tiny_paths["rlhf"], tmp_path / "decided", random_decision(windows=(40, 40)))
    runtime.load_adapter("decided", folder)
    decided = generate_one(runtime, PROMPT, "decided", GREEDY).tokens
    runtime.unload_adapter("decided")
    assert not runtime.decisions
    runtime.load_adapter("plain", tiny_paths["rlhf"])  # the same LoRA without the decision
    assert generate_one(runtime, PROMPT, "plain", GREEDY).tokens == before != decided
    runtime.load_adapter("again", folder)
    assert generate_one(runtime, PROMPT, "again", GREEDY).tokens == decided


def rewrite(folder, change):
    tensors = load_file(folder / DECISION_FILE)
    change(tensors)
    save_file(tensors, str(folder / DECISION_FILE))


@pytest.mark.parametrize("change, message", [
    (lambda t: t.__setitem__("read_layer", torch.tensor(5)), "uses layer 5, but this base has layers 0 to 1"),
    (lambda t: t.__setitem__("probe", torch.zeros(10)), r"probe has shape \[10\], but this base needs \[64\]"),
    (lambda t: t.update({"write.0": t.pop("write.1"), "read_layer": torch.tensor(1)}),
     r"writes at layer 0, before the layer it reads \(1\)"),
    (lambda t: t.pop("windows"), "lacks windows: it was not written by `train decision`"),
    (lambda t: t.__setitem__("windows", torch.tensor([-1, 3])), r"windows is \[-1, 3\]"),
    (lambda t: t["write.1"].__setitem__(0, float("nan")), "not finite numbers"),
], ids=["layer", "shape", "order", "missing", "window", "nan"])
def test_a_bad_decision_file_is_named_and_nothing_is_loaded(runtime, tiny_paths, tmp_path, change, message):
    folder = decided_copy(tiny_paths["rlhf"], tmp_path / "bad", random_decision())
    rewrite(folder, change)
    with pytest.raises(AdapterError, match=message):
        runtime.load_adapter("bad", folder)
    assert "bad" not in runtime.adapters and not runtime.decisions
    assert len(generate_one(runtime, PROMPT, "rlhf", GREEDY).tokens) == 10  # the app goes on


def test_a_damaged_decision_file_is_named(tiny_paths, tmp_path):
    folder = decided_copy(tiny_paths["rlhf"], tmp_path / "damaged", random_decision())
    (folder / DECISION_FILE).write_bytes(b"not a safetensors file")
    model, _ = peft_model(tiny_paths)
    with pytest.raises(AdapterError, match="could not be read .*damaged or incomplete"):
        read_decision(folder, model)
    assert read_decision(tiny_paths["rlhf"], model) is None  # no file: a plain LoRA


def test_lora_training_refuses_to_continue_a_decision(tiny_paths, tmp_path):
    from playground.training.dpo import train_dpo
    from playground.training.data import Pair

    folder = decided_copy(tiny_paths["rlhf"], tmp_path / "decided", random_decision())
    pair = Pair(PROMPT, "Boil it.<end_of_turn>", "No.<end_of_turn>")
    with pytest.raises(PlaygroundError, match=r"carries a refuse-or-answer decision .*\(its card's parent\)"):
        train_dpo(str(tiny_paths["base"]), "float32", tmp_path / "cache", [pair], [pair], tmp_path / "out", "rlhf",
                  folder)
    assert not (tmp_path / "out").exists()


def test_the_compare_tab_says_what_each_decision_chose(tiny_paths, toy_bank, feedback_store, tmp_path):
    """On a real server: the rlhf column carries a decision, and the page names its choice and the probe's score."""
    from gradio_client import Client

    from conftest import free_port
    from playground.config import Lineup, Variant
    from playground.models.runtime import Runtime
    from playground.ui.app import build_app, launch_options
    from test_app import COLUMNS, EMPTY, PROMPTING

    folder = decided_copy(tiny_paths["rlhf"], tmp_path / "decided", random_decision(windows=(40, 40)))
    variants = (Variant("base"), Variant("sft", tiny_paths["sft"], "chat"), Variant("rlhf", folder, "chat"))
    lineup = Lineup(source=str(tiny_paths["base"]), dtype="float32", device="cpu", variants=variants)
    runtime = Runtime.from_lineup(lineup, tmp_path / "cache", log=lambda message: None)
    app = build_app(runtime, lineup, {"toy": toy_bank}, feedback_store)
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                       **launch_options())
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        sampling = (8, 0, 0.95, 0, 1.0, 0, 1)
        _, *outputs = client.predict("", "Tell me how to make pasta.", *PROMPTING, *sampling, COLUMNS, *EMPTY,
                                     api_name="/compare")
    finally:
        app.close()
    notes = outputs[-2]
    line = next(line for line in notes.splitlines() if line.startswith("- **rlhf**"))
    score = float(line.split("probe score ")[1].rstrip(")"))
    choice = "refuse" if score > 0 else "answer"
    assert choice in line and "sft" not in notes and "base" not in notes  # only the column that has one
    runtime.model.set_adapter("rlhf")
    gate = runtime.decisions["rlhf"]
    with torch.no_grad():  # the same prompt, read again: the score the page showed
        runtime.model(**runtime.tokenizer(chat_prompt("Tell me how to make pasta."), return_tensors="pt"))
    assert float(gate.last_scores[0]) == pytest.approx(score, abs=0.01)
