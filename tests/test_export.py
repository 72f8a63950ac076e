"""Exports in TRL's formats, built from a real feedback.db; pair rules, skips, duplicates and the prompt split."""

import json

import pytest

from playground.errors import FeedbackError
from playground.feedback import FeedbackStore
from playground.feedback.export import FORMATS, build, prompt_split, write_jsonl

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


@pytest.fixture
def full_disk(tmp_path):
    """A real 64 KiB filesystem (tmpfs), so writes end with ENOSPC as on a full disk. Needs root to mount."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.fixture
def big_feedback(tmp_path):
    """More upvoted answers than fit on the small disk."""
    store = FeedbackStore(tmp_path / "feedback.db")
    for n in range(120):
        q = [{"role": "user", "content": f"質問 {n}: 桜について教えてください。"}]
        answer = store.record_generation(variant="rlhf", prompt=q[0]["content"], format="chat", messages=q,
                                         response="桜は春に咲きます。" * 40)
        store.record_vote(answer, 1, participant="aiko")
    return store


def test_a_full_disk_while_exporting_leaves_no_half_file_and_loses_nothing(full_disk, big_feedback, tmp_path):
    store = big_feedback
    result = run_cli("export", "--db", str(store.path), "--format", "sft", "--out", str(full_disk / "sft.jsonl"))
    assert result.returncode == 2
    assert "No space left on device; nothing was written" in result.stderr and "Traceback" not in result.stderr
    assert list(full_disk.iterdir()) == []  # neither the export nor its temporary file
    assert store.query("PRAGMA integrity_check")[0]["integrity_check"] == "ok" and store.count("votes") == 120
    roomy = tmp_path / "sft.jsonl"  # the same export where there is room: every row is there
    assert run_cli("export", "--db", str(store.path), "--format", "sft", "--out", str(roomy)).returncode == 0
    assert len(roomy.read_text(encoding="utf-8").splitlines()) == 120


def test_a_full_disk_in_the_data_tab_says_so_and_the_tab_keeps_working(full_disk, big_feedback, monkeypatch):
    import tempfile

    import gradio as gr

    from playground.ui.board import data_tab

    monkeypatch.setattr(tempfile, "tempdir", str(full_disk))  # the tab keeps its downloads in the temp folder
    with gr.Blocks():
        show, _ = data_tab(big_feedback)
    counts, recent, *files = show()
    assert "No space left on device" in counts and "Free some disk space and press Refresh" in counts
    assert "**sft**: 120 rows" in counts  # the counts are still shown
    assert len(recent) == 30 and files[FORMATS.index("sft")] is None
    assert not [p for p in full_disk.rglob("*") if p.name.startswith(".")]  # no half-written file left behind


def test_the_data_tab_makes_its_download_folder_on_the_first_refresh_only(big_feedback, tmp_path, monkeypatch):
    import tempfile

    import gradio as gr

    from playground.ui.board import data_tab

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with gr.Blocks():
        show, _ = data_tab(big_feedback)
    assert list(temp.iterdir()) == []  # an app killed before anyone opens the tab leaves nothing in /tmp
    first, second = show()[2:], show()[2:]
    assert first == second and first[FORMATS.index("sft")].endswith("sft.jsonl")
    folders = list(temp.iterdir())
    assert len(folders) == 1 and sorted(p.name for p in folders[0].iterdir()) == sorted(f"{f}.jsonl" for f in FORMATS)
