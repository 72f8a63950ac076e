"""feedback.db on a real SQLite file: what is stored, the rules for votes and comparisons, migrations."""

import json
import sqlite3

import pytest

from playground.errors import FeedbackError
from playground.feedback import FeedbackStore
from playground.feedback.schema import MIGRATIONS

CONVERSATION = [{"role": "user", "content": "日本の首都は？"}]


def answer(store, variant="base", response="東京です。", **more):
    fields = dict(
        base_model="google/gemma-3-270m", format="chat", prompt_mode="zero", messages=CONVERSATION,
        rendered_prompt="<start_of_turn>user\n日本の首都は？<end_of_turn>\n<start_of_turn>model\n",
        params={"temperature": 0, "max_new_tokens": 64}, tokens=4, latency_ms=210.5, participant="aiko",
    )
    fields.update(more)
    return store.record_generation(variant=variant, prompt="日本の首都は？", response=response, **fields)


def test_database_is_created_with_its_tables_wal_and_foreign_keys(tmp_path):
    path = tmp_path / "feedback.db"
    store = FeedbackStore(path)
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"sessions", "generations", "votes", "comparisons", "corrections", "training_runs"} <= tables
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db().execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.schema_version() == len(MIGRATIONS) == 3
    FeedbackStore(path)  # opening again applies nothing twice
    assert db.execute("SELECT count(*) FROM _migrations").fetchone()[0] == 3


def test_a_generation_row_holds_what_rebuilds_its_training_example(tmp_path):
    path = tmp_path / "feedback.db"
    store = FeedbackStore(path)
    session = store.record_session("aiko", "Firefox")
    generation_id = answer(store, session_id=session, adapter="sft", adapter_version=1, finish="eos")
    row = sqlite3.connect(path).execute("SELECT * FROM generations WHERE id = ?", [generation_id]).fetchone()
    assert row is not None
    stored = store.generation(generation_id)
    assert stored["messages"] == CONVERSATION and stored["params"]["max_new_tokens"] == 64
    assert (stored["variant"], stored["adapter"], stored["adapter_version"]) == ("base", "sft", 1)
    assert stored["rendered_prompt"].startswith("<start_of_turn>user")
    assert (stored["tokens"], stored["latency_ms"], stored["session_id"]) == (4, 210.5, session)
    with pytest.raises(FeedbackError, match="unknown generation field 'colour'"):
        store.record_generation(variant="base", prompt="x", response="y", colour="red")


def test_feedback_must_refer_to_a_stored_answer(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    real = answer(store)
    with pytest.raises(FeedbackError, match="no stored answer with id 99"):
        store.record_vote(99, 1)
    with pytest.raises(FeedbackError, match="no stored answer with id 42"):
        store.record_comparison(real, 42, "left")
    with pytest.raises(FeedbackError, match="no stored answer with id 7"):
        store.record_correction(7, "better")
    with pytest.raises(FeedbackError, match="a vote is \\+1 \\(thumbs up\\) or -1 \\(thumbs down\\), not 2"):
        store.record_vote(real, 2)
    with pytest.raises(FeedbackError, match="outcome 'draw'; use one of left, right, tie, both_bad"):
        store.record_comparison(real, answer(store), "draw")
    with pytest.raises(FeedbackError, match="the correction is empty"):
        store.record_correction(real, "  ")
    assert store.count("votes") == store.count("comparisons") == store.count("corrections") == 0


def test_a_later_vote_replaces_the_earlier_for_counting_and_history_stays(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    generation_id = answer(store)
    store.record_vote(generation_id, 1, participant="aiko")
    store.record_vote(generation_id, -1, participant="aiko")  # changed her mind
    store.record_vote(generation_id, 1, participant="ben")
    store.record_vote(generation_id, 1)  # anonymous votes each count
    store.record_vote(generation_id, 1)
    assert store.count("votes") == 5
    current = [(v["participant"], v["value"]) for v in store.current_votes()]
    assert current == [("aiko", -1), ("ben", 1), (None, 1), (None, 1)]


def test_comparisons_record_whether_they_were_blind(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    a, b = answer(store, "base"), answer(store, "rlhf")
    store.record_comparison(a, b, "right", participant="aiko")
    store.record_comparison(a, b, "left", participant="ben", blind=False)
    rows = store.query("SELECT outcome, blind, participant FROM comparisons ORDER BY id")
    assert rows == [
        {"outcome": "right", "blind": 1, "participant": "aiko"},
        {"outcome": "left", "blind": 0, "participant": "ben"},
    ]
    with pytest.raises(FeedbackError, match="cannot be compared with itself"):
        store.record_comparison(a, a, "tie")


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "feedback.db"
    FeedbackStore(path)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO _migrations VALUES ('m999_future', 'later')")
    db.commit()
    with pytest.raises(FeedbackError, match="written by a newer version of the playground \\(migrations m999_future\\)"):
        FeedbackStore(path)


def test_json_is_stored_readably(tmp_path):
    path = tmp_path / "feedback.db"
    store = FeedbackStore(path)
    answer(store)
    raw = sqlite3.connect(path).execute("SELECT messages FROM generations").fetchone()[0]
    assert json.loads(raw) == CONVERSATION and "日本" in raw  # not \\u-escaped: Datasette shows it as text
