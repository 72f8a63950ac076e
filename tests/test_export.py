"""Exports in TRL's formats, built from a real feedback.db; pair rules, skips, duplicates and the prompt split."""

import json

import pytest

from playground.errors import FeedbackError
from playground.feedback import FeedbackStore
from playground.feedback.export import build, prompt_split, write_jsonl

from test_cli import run_cli

Q = [{"role": "user", "content": "日本の首都は？"}]
CHAT_PROMPT = Q
PLAIN_PROMPT = "日本の首都は？"


@pytest.fixture
def feedback(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")

    def gen(variant, response, fmt="chat", messages=Q):
        rendered = messages[-1]["content"] if fmt == "plain" else None
        return store.record_generation(
            variant=variant, prompt=messages[-1]["content"], response=response, format=fmt, messages=messages,
            rendered_prompt=rendered,
        )

    base = gen("base", "日本の首都は？ 日本の首都は？", fmt="plain")
    sft = gen("sft", "大阪です。")
    rlhf = gen("rlhf", "東京です。")
    store.record_comparison(sft, rlhf, "right", participant="aiko")  # rlhf over sft
    store.record_comparison(base, sft, "tie", participant="ben")
    store.record_comparison(base, rlhf, "both_bad", participant="ben")
    store.record_vote(rlhf, 1, participant="aiko")
    store.record_vote(sft, -1, participant="ben")  # thumbs: rlhf over sft again -> a duplicate pair
    store.record_vote(base, 1, participant="aiko")
    store.record_vote(base, -1, participant="ben")  # evenly split
    store.record_correction(sft, "日本の首都は東京です。", participant="aiko")
    store.record_correction(rlhf, "東京です。", participant="ben")  # same as the answer: no preference
    return store, {"base": base, "sft": sft, "rlhf": rlhf}


def assistant(text):
    return [{"role": "assistant", "content": text}]


def test_dpo_pairs_follow_the_rules(feedback):
    store, _ = feedback
    export = build(store, "dpo")
    assert export.rows == [
        {"prompt": CHAT_PROMPT, "chosen": assistant("東京です。"), "rejected": assistant("大阪です。")},
        {"prompt": CHAT_PROMPT, "chosen": assistant("日本の首都は東京です。"), "rejected": assistant("大阪です。")},
    ]
    assert export.used == {"comparisons": 1, "corrections": 1}
    assert export.skipped == {
        "tie": 1, "both bad": 1, "duplicate": 1, "evenly split votes": 1, "correction same as the answer": 1,
    }
    assert build(store, "reward").rows == export.rows  # the reward model trains on the same pairs


def test_kto_rows_from_thumbs(feedback):
    store, _ = feedback
    export = build(store, "kto")
    assert export.rows == [
        {"prompt": CHAT_PROMPT, "completion": assistant("大阪です。"), "label": False},
        {"prompt": CHAT_PROMPT, "completion": assistant("東京です。"), "label": True},
    ]
    assert export.skipped == {"evenly split votes": 1}


def test_sft_rows_from_corrections_and_upvoted_answers(feedback):
    store, _ = feedback
    export = build(store, "sft")
    assert export.rows == [
        {"messages": Q + assistant("日本の首都は東京です。")},
        {"messages": Q + assistant("東京です。")},  # ben's correction equals rlhf's upvoted answer: one row
    ]
    assert export.skipped == {"duplicate": 1}


def test_plain_variants_export_the_exact_text(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    kwargs = dict(format="plain", prompt="The capital of Japan is", rendered_prompt="The capital of Japan is")
    good = store.record_generation(variant="base", response=" Tokyo.", **kwargs)
    bad = store.record_generation(variant="base2", response=" a city.", **kwargs)
    store.record_comparison(good, bad, "left")
    assert build(store, "dpo").rows == [{"prompt": "The capital of Japan is", "chosen": " Tokyo.", "rejected": " a city."}]


def test_split_is_by_prompt_and_deterministic(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    for i in range(40):
        messages = [{"role": "user", "content": f"question {i}"}]
        a = store.record_generation(variant="a", prompt=f"question {i}", response="yes", format="chat", messages=messages)
        b = store.record_generation(variant="b", prompt=f"question {i}", response="no", format="chat", messages=messages)
        store.record_comparison(a, b, "left")
        store.record_comparison(b, a, "left")  # the same prompt twice, both ways
    train, test = build(store, "dpo", "train").rows, build(store, "dpo", "test").rows
    assert len(train) + len(test) == 80 and test and train
    train_prompts = {json.dumps(r["prompt"]) for r in train}
    test_prompts = {json.dumps(r["prompt"]) for r in test}
    assert not train_prompts & test_prompts  # no prompt on both sides
    assert build(store, "dpo", "test").rows == test  # the same every time
    assert prompt_split({"messages": [{"role": "user", "content": "question 0"}], "prompt": "x"}) in ("train", "test")


def test_bad_export_requests(feedback, tmp_path):
    store, _ = feedback
    with pytest.raises(FeedbackError, match="export format 'ppo'"):
        build(store, "ppo")
    with pytest.raises(FeedbackError, match="could not write .*nothing was written|check the folder"):
        write_jsonl([{"a": 1}], tmp_path / "no-such-folder" / "out.jsonl")


def test_export_cli_writes_trl_rows_and_reports_counts(feedback, tmp_path):
    store, _ = feedback
    out = tmp_path / "dpo.jsonl"
    result = run_cli("export", "--db", str(store.path), "--format", "dpo", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows == build(store, "dpo").rows
    assert "2 rows (1 from comparisons, 1 from corrections)" in result.stdout
    assert "1 duplicate" in result.stdout and "1 tie" in result.stdout
    missing = run_cli("export", "--db", str(tmp_path / "nope.db"), "--format", "kto", "--out", str(out))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
