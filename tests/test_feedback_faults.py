"""feedback.db under load and faults: many writers at once, foreign files, damage, locks, read-only files."""

import os
import sqlite3
import threading

import pytest

from playground.errors import FeedbackError
from playground.feedback import FeedbackStore

from test_feedback_store import answer


def test_32_threads_of_50_writes_with_a_reader_polling_lose_nothing(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    first = answer(store)
    errors, seen_counts, done = [], [], threading.Event()

    def writer(n: int) -> None:
        try:
            for i in range(50):
                if i % 2:
                    store.record_vote(first, 1 if i % 4 == 1 else -1, participant=f"p{n}-{i}")
                else:
                    answer(store, variant=f"v{n}", response=f"answer {n}-{i}")
        except Exception as exc:  # collected: the test fails on any
            errors.append(exc)

    def reader() -> None:
        while not done.is_set():
            seen_counts.append(store.count("generations") + store.count("votes"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(32)]
    polling = threading.Thread(target=reader)
    polling.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    polling.join()
    assert errors == []
    assert store.count("generations") == 1 + 32 * 25
    assert store.count("votes") == 32 * 25
    assert len(store.current_votes()) == 32 * 25  # every participant distinct: every vote counts
    assert len(seen_counts) > 1 and seen_counts == sorted(seen_counts)  # the reader saw the rows arrive
    assert store.integrity_ok()


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "feedback.db"
    path.write_text("name,vote\naiko,+1\n")
    before = path.read_bytes()
    with pytest.raises(FeedbackError, match="is not a SQLite database; it was left as it is"):
        FeedbackStore(path)
    assert path.read_bytes() == before


def test_a_damaged_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "feedback.db"
    store = FeedbackStore(path)
    for i in range(200):
        answer(store, response=f"answer {i} " * 20)
    store.db().conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.db().conn.close()
    data = bytearray(path.read_bytes())
    data[4096:12288] = os.urandom(8192)  # pages 2 and 3 overwritten with noise; the header survives
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(FeedbackError, match="is damaged or not a SQLite database; it was left as it is"):
        FeedbackStore(path)
    assert path.read_bytes() == before


def test_a_locked_database_gives_a_message_and_keeps_nothing_half_done(tmp_path):
    path = tmp_path / "feedback.db"
    store = FeedbackStore(path, busy_timeout=0.2)
    generation_id = answer(store)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    with pytest.raises(FeedbackError, match="is locked by another program; nothing was saved, try again"):
        store.record_vote(generation_id, 1)
    other.execute("ROLLBACK")
    store.record_vote(generation_id, 1)  # once the lock is gone, the same call works
    assert store.count("votes") == 1


def test_a_read_only_database_gives_a_message(tmp_path):
    path = tmp_path / "feedback.db"
    generation_id = answer(FeedbackStore(path))
    reader = FeedbackStore(path, read_only=True)
    assert reader.count("generations") == 1  # reading works
    with pytest.raises(FeedbackError, match="is read-only; nothing was saved"):
        reader.record_vote(generation_id, 1)
    if os.geteuid() != 0:  # a read-only file, as a user sees it (root may write anyway)
        path.chmod(0o444)
        with pytest.raises(FeedbackError, match="is read-only"):
            FeedbackStore(path).record_vote(generation_id, 1)
    assert FeedbackStore(path, read_only=True).count("votes") == 0
