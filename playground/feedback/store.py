"""feedback.db: every answer shown, and every vote, comparison and correction given on it (sqlite-utils).

One connection per thread (Gradio answers in worker threads), WAL so readers never block the writer, a busy
timeout so writers queue instead of failing, foreign keys on. Rows are appended, never rewritten: a participant's
later vote replaces the earlier one only in the `current_votes` view that counting uses.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator
from uuid import uuid4

from sqlite_utils import Database

from playground.errors import FeedbackError
from playground.feedback.schema import MIGRATIONS

SQLITE_HEADER = b"SQLite format 3\x00"
OUTCOMES = ("left", "right", "tie", "both_bad")
JSON_COLUMNS = ("messages", "params")
GENERATION_COLUMNS = {
    "session_id", "participant", "variant", "base_model", "adapter", "adapter_version", "format", "prompt_mode",
    "task", "prompt", "messages", "rendered_prompt", "response", "params", "tokens", "latency_ms", "finish",
}  # fmt: skip


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class FeedbackStore:
    """The feedback database at `path`, created on first use."""

    def __init__(self, path: str | Path, busy_timeout: float = 10.0, read_only: bool = False):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self._local = threading.local()
        self._check_file()
        with self._errors("open"):
            db = self.db()
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            if not read_only:
                self._migrate(db)

    # -- connections and errors --

    def db(self) -> Database:
        """This thread's connection (sqlite3 connections must stay in the thread that made them)."""
        db = getattr(self._local, "db", None)
        if db is None:
            if self.read_only:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self.busy_timeout)
            else:
                conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout, isolation_level=None)
            conn.execute("PRAGMA foreign_keys = ON")
            db = self._local.db = Database(conn)
        return db

    def _check_file(self) -> None:
        if not self.path.exists():
            if self.read_only:
                raise FeedbackError(f"{self.path} does not exist; check the --db path")
            return
        with self.path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
        if head and head != SQLITE_HEADER:
            raise FeedbackError(
                f"{self.path} is not a SQLite database; it was left as it is. "
                "Point --db at another file, or move this one aside"
            )

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """sqlite3's errors as one line that says what happened, that nothing was saved, and what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            text = str(exc).lower()
            if "locked" in text or "busy" in text:
                message = "is locked by another program; nothing was saved, try again in a moment"
            elif "readonly" in text or "read-only" in text:
                message = "is read-only; nothing was saved. Make it writable, or choose another --db"
            elif "not a database" in text or "malformed" in text or "corrupt" in text:
                message = (
                    "is damaged or not a SQLite database; it was left as it is. Restore it from a copy, "
                    "or choose another --db"
                )
            elif "full" in text:
                message = "cannot grow: the disk is full; nothing was saved. Free some space"
            elif "unable to open" in text:
                message = "cannot be opened; check that its folder exists and is writable"
            else:
                raise
            raise FeedbackError(f"{self.path} {message} ({doing}: {exc})") from None

    def _migrate(self, db: Database) -> None:
        db.enable_wal()
        with self._write():
            db["_migrations"].create({"name": str, "applied_at": str}, pk="name", if_not_exists=True)
            applied = {row["name"] for row in db["_migrations"].rows}
            known = {m.__name__ for m in MIGRATIONS}
            if applied - known:
                raise FeedbackError(
                    f"{self.path} was written by a newer version of the playground "
                    f"(migrations {', '.join(sorted(applied - known))}); update the playground to use it"
                )
            for step in MIGRATIONS:
                if step.__name__ not in applied:
                    step(db)
                    db["_migrations"].insert({"name": step.__name__, "applied_at": now()})

    def schema_version(self) -> int:
        return self.db()["_migrations"].count

    # -- writes --

    @contextmanager
    def _write(self) -> Iterator[Database]:
        """A short write transaction that takes the write lock at BEGIN (IMMEDIATE), so that it waits out the
        busy timeout; a deferred one that reads first fails at once when another writer got in between."""
        db = self.db()
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.conn.in_transaction:  # some errors end the transaction themselves
                db.conn.execute("ROLLBACK")
            raise
        db.conn.execute("COMMIT")

    def _insert(self, table: str, record: dict, doing: str) -> int:
        with self._errors(doing), self._write() as db:
            return db[table].insert(record).last_pk

    def _require_generation(self, generation_id: int) -> None:
        with self._errors("checking the answer"):
            found = self.db().execute("SELECT 1 FROM generations WHERE id = ?", [generation_id]).fetchone()
        if not found:
            raise FeedbackError(f"there is no stored answer with id {generation_id!r}; vote on an answer shown")

    def record_session(self, participant: str | None = None, user_agent: str | None = None) -> str:
        session_id = uuid4().hex
        record = {"id": session_id, "participant": participant, "started_at": now(), "user_agent": user_agent}
        self._insert("sessions", record, "recording the session")
        return session_id

    def record_generation(self, *, variant: str, prompt: str, response: str, **more) -> int:
        """Store one answer as shown, with what is needed to rebuild its training example; returns its id."""
        unknown = sorted(set(more) - GENERATION_COLUMNS)
        if unknown:
            raise FeedbackError(f"unknown generation field {unknown[0]!r}; known: {', '.join(sorted(GENERATION_COLUMNS))}")
        record = {"variant": variant, "prompt": prompt, "response": response, "created_at": now(), **more}
        for column in JSON_COLUMNS:
            if column in record and not isinstance(record[column], str):
                record[column] = json.dumps(record[column], ensure_ascii=False)
        return self._insert("generations", record, "storing the answer")

    def record_vote(self, generation_id: int, value: int, participant: str | None = None) -> int:
        """Thumbs up (+1) or down (-1). A later vote by the same participant counts instead of the earlier."""
        if value not in (1, -1):
            raise FeedbackError(f"a vote is +1 (thumbs up) or -1 (thumbs down), not {value!r}")
        self._require_generation(generation_id)
        record = {"generation_id": generation_id, "value": value, "participant": participant, "created_at": now()}
        return self._insert("votes", record, "storing the vote")

    def record_comparison(
        self, left_id: int, right_id: int, outcome: str, participant: str | None = None, blind: bool = True
    ) -> int:
        """An A/B verdict between two stored answers; blind when names were hidden until the vote."""
        if outcome not in OUTCOMES:
            raise FeedbackError(f"comparison outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
        if left_id == right_id:
            raise FeedbackError(f"answer {left_id} cannot be compared with itself")
        self._require_generation(left_id)
        self._require_generation(right_id)
        record = {
            "left_id": left_id,
            "right_id": right_id,
            "outcome": outcome,
            "blind": int(bool(blind)),
            "participant": participant,
            "created_at": now(),
        }
        return self._insert("comparisons", record, "storing the comparison")

    def record_correction(self, generation_id: int, text: str, participant: str | None = None) -> int:
        """The answer the participant would have wanted instead (an "ideal answer")."""
        if not text or not text.strip():
            raise FeedbackError("the correction is empty; write the answer you would have wanted")
        self._require_generation(generation_id)
        record = {"generation_id": generation_id, "text": text, "participant": participant, "created_at": now()}
        return self._insert("corrections", record, "storing the correction")

    # -- training runs --

    def start_run(self, kind: str, params: dict) -> int:
        record = {"kind": kind, "status": "running", "started_at": now(), "params": json.dumps(params), "metrics": "[]"}
        return self._insert("training_runs", record, "recording the training run")

    def update_run(self, run_id: int, step: dict | None = None, **fields) -> None:
        """Append a progress step to the run's metrics and/or set fields (status, message, folder, version, pid)."""
        with self._errors("updating the training run"), self._write() as db:
            if step is not None:
                metrics = json.loads(db["training_runs"].get(run_id)["metrics"] or "[]")
                fields["metrics"] = json.dumps(metrics + [step])
            if fields.get("status") in ("done", "failed", "cancelled"):
                fields["finished_at"] = now()
            db["training_runs"].update(run_id, fields)

    def run(self, run_id: int) -> dict:
        rows = self.query("SELECT * FROM training_runs WHERE id = ?", [run_id])
        if not rows:
            raise FeedbackError(f"there is no training run {run_id}")
        return {**rows[0], "metrics": json.loads(rows[0]["metrics"] or "[]"), "params": json.loads(rows[0]["params"])}

    # -- reads --

    def query(self, sql: str, params: list | tuple = ()) -> list[dict]:
        with self._errors("reading"):
            return list(self.db().query(sql, params))

    def generation(self, generation_id: int) -> dict:
        rows = self.query("SELECT * FROM generations WHERE id = ?", [generation_id])
        if not rows:
            raise FeedbackError(f"there is no stored answer with id {generation_id!r}")
        row = rows[0]
        for column in JSON_COLUMNS:
            row[column] = json.loads(row[column]) if row[column] else None
        return row

    def count(self, table: str) -> int:
        return self.query(f"SELECT count(*) AS n FROM [{table}]")[0]["n"]

    def current_votes(self) -> list[dict]:
        """Each participant's latest vote on each answer (anonymous votes each count once)."""
        return self.query("SELECT * FROM current_votes ORDER BY id")

    def integrity_ok(self) -> bool:
        return self.query("PRAGMA integrity_check")[0]["integrity_check"] == "ok"
