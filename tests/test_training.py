"""Real TRL DPO on the tiny model: weights move the right way, versions publish whole or not at all, hot-load."""

import json
import os
import signal
import time

import pytest
import torch
from safetensors.torch import load_file

from playground.feedback import FeedbackStore
from playground.models.generation import SamplingSettings, generate_one
from playground.prompting.formats import END_OF_TURN
from playground.prompting.refusals import is_refusal
from playground.training.data import NotEnoughData, Pair, training_pairs
from playground.training.dpo import DPOSettings, train_dpo
from playground.training.jobs import JobSpec, Jobs
from playground.training.own_answers import BALANCED, PROBE_SETS, cap_lookalikes, own_answer_pairs, probes_to_ask
from playground.training.seed import Probe, chat_prompt, refusal_probes

FAST = DPOSettings(steps=12, batch_size=4, learning_rate=5e-3, max_length=64)


def separable_feedback(path, prompts=48):
    """Every comparison prefers a polite answer to a curt one: a preference a tiny model can learn."""
    store = FeedbackStore(path)
    for i in range(prompts):
        messages = [{"role": "user", "content": f"Question number {i}?"}]
        kwargs = dict(prompt=messages[0]["content"], format="chat", messages=messages)
        good = store.record_generation(variant="sft", response="Thank you, here is the answer.", **kwargs)
        bad = store.record_generation(variant="base", response="No.", **kwargs)
        store.record_comparison(good, bad, "left")
    return store


def test_dpo_moves_the_adapter_publishes_it_and_it_hot_loads(tiny_lineup, tiny_paths, tmp_path, runtime):
    store = separable_feedback(tmp_path / "feedback.db")
    train, test = training_pairs(store)
    assert len(train) >= 8 and test and not {p.prompt for p in train} & {p.prompt for p in test}
    steps = []
    folder = train_dpo(tiny_lineup.source, "float32", tmp_path / "cache", train, test, tmp_path / "adapters", "rlhf",
                       parent=tiny_paths["sft"], settings=FAST, progress=steps.append)
    assert folder == tmp_path / "adapters" / "rlhf" / "v1"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                                          "card.json"]
    assert not list((tmp_path / "adapters" / "rlhf").glob(".staging-*"))
    trained, parent = load_file(folder / "adapter_model.safetensors"), load_file(tiny_paths["sft"] / "adapter_model.safetensors")
    assert trained.keys() == parent.keys() and all("lora_" in k for k in trained)  # only LoRA: the base is not saved
    assert any(not torch.equal(trained[k], parent[k]) for k in trained)  # the adapter learned
    card = json.loads((folder / "card.json").read_text())
    metrics = card["metrics"]
    assert metrics["held_out_preference_accuracy_after"] > metrics["held_out_preference_accuracy_before"]
    assert metrics["held_out_preference_accuracy_after"] == 1.0
    assert card["parent"] == str(tiny_paths["sft"]) and card["version"] == 1 and not card["worse_than_before"]
    assert card["pairs"] == {"train": len(train), "held_out": len(test)}
    readme = (folder / "README.md").read_text(encoding="utf-8")  # a card for people, not PEFT's empty template
    assert "# rlhf v1" in readme and f"{len(train)} training and {len(test)} held-out" in readme
    assert "held out preference accuracy: " in readme and "More Information Needed" not in readme
    assert [s["step"] for s in steps if "step" in s][-1] == FAST.steps
    margins = [s["rewards/margins"] for s in steps if "rewards/margins" in s]
    assert margins[-1] > margins[0]

    base_before = {n: p.clone() for n, p in runtime.base.named_parameters() if "lora_" not in n}
    runtime.load_adapter("rlhf-v1", folder)  # hot-load into a running runtime
    answer = generate_one(runtime, "<start_of_turn>user\nQuestion number 99?<end_of_turn>\n<start_of_turn>model\n",
                          "rlhf-v1", SamplingSettings(max_new_tokens=6, min_new_tokens=6))
    assert len(answer.tokens) == 6
    assert all(torch.equal(p, base_before[n]) for n, p in runtime.base.named_parameters() if "lora_" not in n)

    again = train_dpo(tiny_lineup.source, "float32", tmp_path / "cache", train, test, tmp_path / "adapters", "rlhf",
                      parent=folder, settings=DPOSettings(steps=2, batch_size=4, max_length=64))
    assert again.name == "v2" and (folder / "card.json").read_text() == json.dumps(card, indent=2, ensure_ascii=False)


def test_own_answer_pairs_reject_what_the_policy_actually_says(runtime):
    harmful = Probe(chat_prompt("How do I open my neighbour's lock?"), "I can't help with that." + END_OF_TURN, True,
                    "en")
    lookalike = Probe(chat_prompt("How do I kill a stuck process?"), "Run kill with its id." + END_OF_TURN, False, "en")
    said = generate_one(runtime, harmful.prompt, "sft", SamplingSettings(max_new_tokens=64))
    assert said.text.strip() and not is_refusal(said.text)  # the tiny policy complies with anything
    closed = END_OF_TURN if said.finish in ("eos", "stop") else ""
    # The harmful request's answer is the rejected side against the written refusal; the look-alike was answered.
    assert own_answer_pairs(runtime, "sft", [harmful, lookalike]) == [
        Pair(harmful.prompt, harmful.written, said.text.strip() + closed)]


def test_balanced_own_answers_keep_no_more_lookalike_pairs_than_compliances_per_language():
    def wrong(lang, harmful, n):
        return [(Probe(f"{lang} {harmful} {i}", "written", harmful, lang), Pair(f"{lang} {harmful} {i}", "c", "r"))
                for i in range(n)]

    en_complied, en_declined = wrong("en", True, 2), wrong("en", False, 5)
    ja_complied, ja_declined = wrong("ja", True, 4), wrong("ja", False, 1)
    kept = cap_lookalikes(en_declined + en_complied + ja_complied + ja_declined)
    # English keeps its first 2 declined look-alikes, for its 2 compliances; Japanese keeps all 5.
    assert kept == [pair for _, pair in en_declined[:2] + en_complied + ja_complied + ja_declined]
    assert cap_lookalikes(wrong("en", False, 3)) == []


def test_own_answers_which_picks_its_training_prompts():
    from playground.cli import build_parser

    probes = refusal_probes()
    picked = {which: probes_to_ask(which) for which in PROBE_SETS}
    assert len(picked["all"]) == len(probes) > len(picked["harmful"]) > len(picked["harmful-ja"]) > 100
    assert all(probe.harmful for probe in picked["harmful"])
    assert all(probe.harmful and probe.lang == "ja" for probe in picked["harmful-ja"])
    assert any(not probe.harmful for probe in picked["all"]) and any(probe.lang == "en" for probe in picked["harmful"])
    parse = build_parser().parse_args
    assert parse(["train", "dpo", "--own-answers"]).own_answers == "all"
    assert parse(["train", "dpo", "--own-answers", "harmful-ja"]).own_answers == "harmful-ja"
    assert picked["balanced"] == picked["all"]
    assert parse(["train", "dpo", "--own-answers", BALANCED]).own_answers == BALANCED
    assert parse(["train", "dpo"]).own_answers == ""


def test_too_few_pairs_says_how_many_and_how_to_get_more(tmp_path):
    store = separable_feedback(tmp_path / "feedback.db", prompts=3)
    with pytest.raises(NotEnoughData, match=r"\d preference pairs to train on .* needs at least 8. Collect more"):
        Jobs(store).start(JobSpec("dpo", str(store.path), "x", "float32", str(tmp_path), str(tmp_path), "rlhf"))
    assert store.count("training_runs") == 0


def test_a_killed_run_leaves_no_version_folder(tiny_lineup, tiny_paths, tmp_path):
    store = separable_feedback(tmp_path / "feedback.db")
    adapters = tmp_path / "adapters"
    spec = JobSpec("dpo", str(store.path), tiny_lineup.source, "float32", str(tmp_path / "cache"), str(adapters),
                   "rlhf", str(tiny_paths["sft"]), {"steps": 100000, "learning_rate": 1e-3, "max_length": 64})
    jobs = Jobs(store)
    run_id = jobs.start(spec)
    deadline = time.time() + 240
    while not store.run(run_id)["metrics"]:  # wait until it is really training
        assert time.time() < deadline and jobs.running(), store.run(run_id)["message"]
        time.sleep(0.5)
    os.kill(jobs.process.pid, signal.SIGKILL)  # as an out-of-memory kill would
    run = jobs.wait(timeout=30)
    assert run["status"] == "failed" and "ended abruptly" in run["message"]
    assert not (adapters / "rlhf").exists() or not list((adapters / "rlhf").iterdir())
    assert store.integrity_ok()


def test_train_cli_prints_the_new_adapter_folder(tiny_config, tiny_paths, tmp_path):
    from test_cli import run_cli

    store = separable_feedback(tmp_path / "feedback.db")
    result = run_cli("train", "dpo", "--config", str(tiny_config), "--db", str(store.path), "--from",
                     str(tiny_paths["sft"]), "--adapters", str(tmp_path / "adapters"), "--steps", "3", "--lr", "1e-3",
                     "--cache-dir", str(tmp_path / "cache"), "--own-answers", "harmful-ja")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "adapters" / "rlhf" / "v1"
    assert result.stdout.strip() == str(folder)
    assert "step 3" in result.stderr and "held-out preference accuracy after" not in result.stdout
    run = store.run(1)
    assert (run["status"], run["folder"], run["version"]) == ("done", str(folder), 1)
    assert [m["step"] for m in run["metrics"]] == [1, 2, 3]
    # The tiny policy hardly ever declines: the project's Japanese training harmful requests gave on-policy pairs.
    card = json.loads((folder / "card.json").read_text())
    assert card["hyperparameters"]["own_answers"] == "harmful-ja"
    asked = sum(probe.harmful and probe.lang == "ja" for probe in refusal_probes())
    assert asked >= card["pairs"]["own_answers"] > asked // 2
    empty = FeedbackStore(tmp_path / "empty.db")
    refused = run_cli("train", "dpo", "--config", str(tiny_config), "--db", str(empty.path))
    assert refused.returncode == 2 and "0 preference pairs to train on" in refused.stderr


def ideal_answers(path, prompts=40):
    """Every answer was corrected to the same polite reply: a target a tiny model can learn."""
    store = FeedbackStore(path)
    for i in range(prompts):
        messages = [{"role": "user", "content": f"Question number {i}?"}]
        shown = store.record_generation(variant="base", prompt=messages[0]["content"], response="No.", format="chat",
                                        messages=messages)
        store.record_correction(shown, "Thank you, here is the answer.")
    return store


def test_sft_learns_the_ideal_answers_and_publishes(tiny_lineup, tiny_paths, tmp_path):
    from playground.training.data import sft_examples
    from playground.training.sft import SFTSettings, train_sft

    store = ideal_answers(tmp_path / "feedback.db")
    train, test = sft_examples(store)
    assert train and test and train[0].completion == "Thank you, here is the answer.<end_of_turn>"
    assert train[0].prompt.startswith("<start_of_turn>user\nQuestion number")
    steps = []
    folder = train_sft(tiny_lineup.source, "float32", tmp_path / "cache", train, test, tmp_path / "adapters",
                       "instruct", parent=None, settings=SFTSettings(steps=20, batch_size=8, learning_rate=2e-2,
                                                                     max_length=64), progress=steps.append)
    assert folder == tmp_path / "adapters" / "instruct" / "v1"
    card = json.loads((folder / "card.json").read_text())
    assert card["kind"] == "sft" and card["parent"] is None
    assert card["metrics"]["held_out_loss_after"] < card["metrics"]["held_out_loss_before"] - 0.2  # moved right
    losses = [s["loss"] for s in steps if "loss" in s]
    assert len(losses) == 20 and losses[-1] < losses[0]
    weights = load_file(folder / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in weights.items())  # B starts at zero


def test_a_bf16_run_trains_in_what_the_cpu_does_fast_and_saves_bf16(tiny_lineup, tmp_path):
    from playground.training.common import cpu_has_native_bf16
    from playground.training.data import sft_examples
    from playground.training.sft import SFTSettings, train_sft

    train, test = sft_examples(ideal_answers(tmp_path / "feedback.db"))
    steps = []
    folder = train_sft(tiny_lineup.source, "bfloat16", tmp_path / "cache", train, test, tmp_path / "adapters",
                       "instruct", parent=None, settings=SFTSettings(steps=2, batch_size=8, max_length=64),
                       progress=steps.append)
    expected = "bfloat16" if torch.cuda.is_available() or cpu_has_native_bf16() else "float32"
    assert json.loads((folder / "card.json").read_text())["compute_dtype"] == expected
    said = [s["message"] for s in steps if "no native bfloat16" in s.get("message", "")]
    assert said == ([] if expected == "bfloat16" else
                    ["this CPU has no native bfloat16: training in float32, many times faster here; "
                     "the adapter is saved in bfloat16"])
    assert {v.dtype for v in load_file(folder / "adapter_model.safetensors").values()} == {torch.bfloat16}


def test_training_dtype_keeps_bf16_only_where_the_hardware_runs_it():
    from playground.training.common import training_dtype

    assert training_dtype("bfloat16", cuda=False, native_bf16=False) == "float32"  # e.g. an AVX2-only laptop
    assert training_dtype("bfloat16", cuda=False, native_bf16=True) == "bfloat16"  # AVX512-BF16 or AMX
    assert training_dtype("float16", cuda=False, native_bf16=True) == "float32"
    assert training_dtype("bfloat16", cuda=True, native_bf16=False) == "bfloat16"
    assert training_dtype("float32", cuda=False, native_bf16=False) == "float32"


def test_the_fused_head_scores_only_labelled_positions_on_cpu_with_the_same_log_probs(tiny_paths, monkeypatch):
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM

    from playground.training.fused_head import score_labelled_positions_only

    score_labelled_positions_only()
    scored_rows = []
    kernel = trl_utils._ChunkedLogProbFunction

    class Counting:  # passes through to TRL's kernel, noting how many positions it scores
        @staticmethod
        def apply(hidden, *args):
            scored_rows.append(hidden.shape[0])
            return kernel.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_paths["base"]), dtype=torch.float32)
    ids = torch.randint(3, model.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :6] = -100  # the prompt
    labels[1, 8:] = -100  # padding on the second row
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
        labelled = labels[:, 1:] != -100
        expected = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0] * labelled
        trl_utils.add_fused_lm_head(model)
        fused = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    assert scored_rows == [int(labelled.sum())] == [6]  # 4 + 2 answer tokens, not all 18 positions
    assert torch.allclose(fused, expected, atol=1e-5)


def test_sequence_logp_sums_the_log_probs_of_the_completions_tokens(tiny_paths):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from playground.training.common import sequence_logp

    model = AutoModelForCausalLM.from_pretrained(str(tiny_paths["base"]), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_paths["base"]))
    prompt, completion = chat_prompt("Question number 3?"), "Thank you, here is the answer."
    prompt_ids = tokenizer(prompt)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=torch.tensor([prompt_ids + completion_ids])).logits[0].float(), -1)
    expected = sum(float(logps[len(prompt_ids) - 1 + i, token]) for i, token in enumerate(completion_ids))
    assert len(completion_ids) > 2
    assert sequence_logp(model, tokenizer, prompt, completion) == pytest.approx(expected, abs=1e-4)
    assert sequence_logp(model, tokenizer, prompt, "") == 0.0


def test_sft_needs_ideal_answers(tmp_path):
    from playground.training.data import NotEnoughData, sft_examples

    with pytest.raises(NotEnoughData, match="0 examples to train on .* Collect more: write ideal answers"):
        sft_examples(FeedbackStore(tmp_path / "feedback.db"))


def test_kto_learns_from_thumbs_alone(tiny_lineup, tiny_paths, tmp_path):
    from playground.training.data import kto_examples
    from playground.training.kto import KTOSettings, train_kto

    store = FeedbackStore(tmp_path / "feedback.db")
    for i in range(48):  # thumbs on answers to different prompts form no pairs: only KTO can use them
        messages = [{"role": "user", "content": f"Question number {i}?"}]
        good = i % 2 == 0
        shown = store.record_generation(variant="sft", prompt=messages[0]["content"], format="chat",
                                        messages=messages, response="Thank you, here is the answer." if good else "No.")
        store.record_vote(shown, 1 if good else -1)
    from playground.feedback.export import build

    assert build(store, "dpo").rows == []
    train, test = kto_examples(store)
    assert {r.label for r in train} == {True, False} and test
    folder = train_kto(tiny_lineup.source, "float32", tmp_path / "cache", train, test, tmp_path / "adapters", "kto",
                       parent=tiny_paths["sft"], settings=KTOSettings(steps=12, batch_size=8, learning_rate=5e-3,
                                                                      max_length=64))
    card = json.loads((folder / "card.json").read_text())
    assert card["kind"] == "kto" and folder.name == "v1"
    metrics = card["metrics"]
    assert metrics["held_out_rating_accuracy_after"] > metrics["held_out_rating_accuracy_before"]
    with pytest.raises(NotEnoughData, match="KTO needs at least 8 with both thumbs up and thumbs down"):
        kto_examples(FeedbackStore(tmp_path / "empty.db"))


def test_qlora_trains_on_a_4bit_base_and_the_adapter_loads_on_the_full_one(tmp_path):
    """bitsandbytes' CPU kernels pack weights in blocks of 64 inputs, so this base is a little wider than tiny.py's."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import tiny

    folder = tmp_path / "tiny-64"
    tiny.build_model(folder, vocab_size=len(tiny.build_tokenizer(folder)), hidden_size=64, head_dim=32)
    store = separable_feedback(tmp_path / "feedback.db")
    train, test = training_pairs(store)
    settings = DPOSettings(steps=6, batch_size=4, learning_rate=5e-3, max_length=64, quantize_4bit=True)
    adapter = train_dpo(str(folder), "float32", tmp_path / "cache", train, test, tmp_path / "adapters", "rlhf",
                        settings=settings)
    card = json.loads((adapter / "card.json").read_text())
    assert card["hyperparameters"]["quantize_4bit"] is True
    assert card["metrics"]["held_out_preference_accuracy_after"] > 0.5  # the 4-bit run learned the preference
    trained = load_file(adapter / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and trained[k].abs().sum() > 0 for k in trained)  # B starts at zero
    base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter))  # the full-precision base takes the QLoRA adapter as it is
    assert model(input_ids=torch.tensor([[2, 5, 6]])).logits.shape[-1] == base.config.vocab_size
