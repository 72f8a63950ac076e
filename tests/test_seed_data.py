"""The project's own data in data/sft and data/preferences: enough of it, of every kind, well formed, held out."""

import json
from collections import Counter

import pytest

from playground.alignment_eval import ANSWER_LINE, in_language, is_refusal, well_shaped
from playground.training.seed import (
    Record, SeedDataError, chat_prompt, decision_data, preference_records, read_records, refusal_probes,
    seed_examples, seed_pairs, seed_rated, sft_records,
)

SFT_TASKS = {"question", "explanation", "summary", "classification", "translation", "arithmetic", "rewriting",
             "refusal", "lookalike", "uncertainty"}


def test_instruction_data_covers_every_task_in_both_languages_with_a_held_out_slice():
    records = sft_records()
    assert len(records) >= 600
    counts = Counter((r["task"], r.lang) for r in records)
    assert {task for task, _ in counts} == SFT_TASKS
    assert all(counts[(task, lang)] >= 20 for task in SFT_TASKS for lang in ("en", "ja"))
    held_out = Counter((r["task"], r.lang) for r in records if r.split == "test")
    assert all(held_out[(task, lang)] >= 3 for task in SFT_TASKS for lang in ("en", "ja"))


def test_no_held_out_prompt_is_trained_on_by_any_trainer():
    """A test prompt of either data set is in no trainer's set: an instruction held out for format_rate must not
    be a DPO pair's prompt, nor a held-out pair's prompt an SFT example's or one the decision step trains on (the
    drafts' included)."""
    (train, test), (train_pairs, test_pairs) = seed_examples(), seed_pairs()
    decision, decision_held_out = decision_data()
    trained = {e.prompt for e in train} | {p.prompt for p in train_pairs} | {
        p.prompt for p in decision.probes + decision_held_out}
    held_out = {e.prompt for e in test} | {p.prompt for p in test_pairs}
    assert held_out and not held_out & trained


def test_the_dev_split_covers_every_kind_and_shares_no_prompt_with_train_or_test():
    """dev chooses between candidate builds (`eval defaults --split dev`), so test stays unseen until one is chosen:
    no trainer sees it, and none of its prompts is anywhere else in data/."""
    sft, pairs = sft_records(), preference_records()
    dev_tasks = Counter((r["task"], r.lang) for r in sft if r.split == "dev")
    assert all(dev_tasks[(task, lang)] >= 1 for task in SFT_TASKS for lang in ("en", "ja"))
    dev_pairs = Counter((r["axis"], r.get("kind"), r.lang) for r in pairs if r.split == "dev")
    kinds = (("helpful", None), ("honest", None), ("harmless", "harmful"), ("harmless", "lookalike"))
    assert all(dev_pairs[(axis, kind, lang)] >= 10 for axis, kind in kinds for lang in ("en", "ja"))
    dev_prompts = {chat_prompt(r["prompt"]) for r in sft + pairs if r.split == "dev"}
    others = {chat_prompt(r["prompt"]) for r in sft + pairs if r.split != "dev"}
    assert len(dev_prompts) == sum(r.split == "dev" for r in sft + pairs) and not dev_prompts & others
    (train, test), (train_pairs, test_pairs) = seed_examples(), seed_pairs()
    trained = {e.prompt for e in train + test} | {p.prompt for p in train_pairs + test_pairs}
    decision, decision_held_out = decision_data()
    decided = {p.prompt for p in refusal_probes() + decision.probes + decision_held_out}
    assert dev_prompts and not dev_prompts & (trained | decided)


def test_instruction_answers_have_the_shape_their_task_asks_for():
    """The checks `eval defaults` applies to the models' answers hold for the data's own answers."""
    for r in sft_records():
        assert well_shaped(r, r["response"], finished=True), r.id
        if r["task"] == "arithmetic":
            assert float(ANSWER_LINE.match(r["response"].splitlines()[-1]).group(0).split()[-1]) == float(r["answer"])
        if r["task"] in ("lookalike", "uncertainty"):
            assert not is_refusal(r["response"]), r.id


def test_preference_pairs_are_tagged_by_axis_and_language():
    records = preference_records()
    assert len(records) >= 300
    counts = Counter((r["axis"], r.lang) for r in records)
    assert all(counts[(axis, lang)] >= 30 for axis in ("helpful", "honest", "harmless") for lang in ("en", "ja"))
    harmless = [r for r in records if r["axis"] == "harmless"]
    assert {r["kind"] for r in harmless} == {"harmful", "lookalike"}
    for r in harmless:  # a harmful request is declined; a harmless look-alike is not, and its rejected answer is
        assert is_refusal(r["chosen"]) == (r["kind"] == "harmful"), r.id
        assert is_refusal(r["rejected"]) == (r["kind"] == "lookalike"), r.id
    assert all(r["chosen"] != r["rejected"] for r in records)
    assert all(in_language(r["chosen"], r.lang) for r in records if r["axis"] == "harmless")


def test_seed_sets_in_the_trainers_formats():
    train, test = seed_examples()
    assert train[0].prompt.startswith("<start_of_turn>user\n") and train[0].prompt.endswith("<start_of_turn>model\n")
    assert all(e.completion.endswith("<end_of_turn>") for e in train + test)
    pairs, held_out = seed_pairs()
    assert len(pairs) >= 250 and len(held_out) >= 40
    assert not {p.prompt for p in pairs} & {p.prompt for p in held_out}  # nothing held out is trained on
    rated, _ = seed_rated()
    assert len(rated) == 2 * len(pairs) and sum(r.label for r in rated) == len(pairs)


def test_refusal_probes_are_the_training_harmful_requests_and_look_alikes_with_their_written_answers():
    probes = refusal_probes()
    harmful = [r for r in sft_records() if r["task"] == "refusal"] + [
        r for r in preference_records() if r.get("kind") == "harmful"]
    lookalikes = [r for r in sft_records() if r["task"] == "lookalike"] + [
        r for r in preference_records() if r.get("kind") == "lookalike"]
    assert sum(p.harmful for p in probes) == sum(r.split == "train" for r in harmful)
    assert sum(not p.harmful for p in probes) == sum(r.split == "train" for r in lookalikes)
    held_out = {chat_prompt(r["prompt"]) for r in harmful + lookalikes if r.split == "test"}
    assert not {p.prompt for p in probes} & held_out  # what eval defaults asks is never trained on
    assert all(is_refusal(p.written) == p.harmful and p.written.endswith("<end_of_turn>") for p in probes)


@pytest.mark.parametrize("line, message", [
    ('{"id": "a", "lang": "en"', "not valid JSON"),
    ('{"id": "a", "lang": "fr", "task": "t", "split": "train", "prompt": "p", "response": "r"}', "lang must be"),
    ('{"id": "a", "lang": "en", "task": "t", "split": "train", "prompt": " ", "response": "r"}', "'prompt' is missing"),
])
def test_a_malformed_line_is_named_with_its_file_and_line(tmp_path, line, message):
    good = json.dumps({"id": "x", "lang": "en", "task": "t", "split": "train", "prompt": "p", "response": "r"})
    (tmp_path / "mine.jsonl").write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(SeedDataError, match=f"mine.jsonl:2: .*{message}"):
        read_records(tmp_path, ("id", "lang", "task", "split", "prompt", "response"))


def test_shape_checks_tell_apart_what_a_base_model_writes():
    label = Record("c", "en", "test", {"task": "classification", "labels": ["positive", "negative"]})
    assert well_shaped(label, "negative.", True) and not well_shaped(label, "negative. Review: the food was", False)
    sums = Record("a", "ja", "test", {"task": "arithmetic"})
    assert well_shaped(sums, "3 × 4 = 12\n答え: 12", True) and not well_shaped(sums, "12個です", True)
    refusal = Record("r", "en", "test", {"task": "refusal"})
    assert well_shaped(refusal, "I can't help with that. Try a locksmith.", True)
    assert not well_shaped(refusal, "Sure! First you need", True)
    question = Record("q", "ja", "test", {"task": "question"})
    assert well_shaped(question, "富士山です。", True) and not well_shaped(question, "Mount Fuji.", True)
    assert not well_shaped(question, "富士山です。次の質問", False)  # ran out of tokens: not a finished answer
    assert is_refusal("申し訳ありませんが、その依頼にはお応えできません。") and not is_refusal("プロセスを終了するには")
    assert is_refusal("申し訳ありませんが、そのご相談にはお答えいたしかねます。") and is_refusal("手順は教えられません。")
    assert not is_refusal("放っておくと故障につながりかねません。")  # かねません: "it may well", not declining


def test_seed_data_joins_feedback_for_every_kind_of_run(tmp_path):
    from playground.feedback import FeedbackStore
    from playground.training.jobs import training_data

    empty = FeedbackStore(tmp_path / "feedback.db")
    pairs, held_out = seed_pairs()
    for kind in ("dpo", "reward", "kto", "sft"):
        train, test = training_data(kind, empty, "feedback+seed")  # no feedback yet: the seed set alone
        assert (train, test) == training_data(kind, empty, "seed") and train and test
    from test_training import separable_feedback

    store = separable_feedback(tmp_path / "votes.db")
    mine, mine_held_out = training_data("dpo", store, "feedback")
    both, both_held_out = training_data("dpo", store, "feedback+seed")
    assert both == mine + pairs and both_held_out == mine_held_out + held_out
