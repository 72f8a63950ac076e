"""feedback.db's schema as a list of small migrations, applied once each, in order (as simonw/llm does)."""

from __future__ import annotations

from typing import Callable

from sqlite_utils import Database

MIGRATIONS: list[Callable[[Database], None]] = []


def migration(fn: Callable[[Database], None]) -> Callable[[Database], None]:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: Database) -> None:
    db["sessions"].create(
        {"id": str, "participant": str, "started_at": str, "user_agent": str},
        pk="id",
    )
    db["generations"].create(
        {
            "id": int,
            "created_at": str,
            "session_id": str,
            "participant": str,
            "variant": str,  # the column's name in the lineup
            "base_model": str,  # e.g. google/gemma-3-270m
            "adapter": str,  # adapter name (None: the bare base)
            "adapter_version": int,
            "format": str,  # plain or chat
            "prompt_mode": str,  # zero, one, few, cot, few-cot
            "task": str,  # example bank, if any
            "prompt": str,  # the user's message
            "messages": str,  # JSON: the conversation up to and including the user's message
            "rendered_prompt": str,  # the exact text the model saw
            "response": str,
            "params": str,  # JSON: sampling settings, k, language
            "tokens": int,
            "latency_ms": float,
            "finish": str,  # eos, stop, length or cancelled
        },
        pk="id",
        not_null=["created_at", "variant", "prompt", "response"],
        foreign_keys=[("session_id", "sessions", "id")],
    )
    db["votes"].create(
        {"id": int, "generation_id": int, "participant": str, "value": int, "created_at": str},
        pk="id",
        not_null=["generation_id", "value", "created_at"],
        foreign_keys=[("generation_id", "generations", "id")],
    )
    db["comparisons"].create(
        {
            "id": int,
            "left_id": int,
            "right_id": int,
            "outcome": str,  # left, right, tie or both_bad
            "blind": int,  # 1 when names were hidden until the vote: only these feed the ratings
            "participant": str,
            "created_at": str,
        },
        pk="id",
        not_null=["left_id", "right_id", "outcome", "blind", "created_at"],
        foreign_keys=[("left_id", "generations", "id"), ("right_id", "generations", "id")],
    )
    db["corrections"].create(
        {"id": int, "generation_id": int, "text": str, "participant": str, "created_at": str},
        pk="id",
        not_null=["generation_id", "text", "created_at"],
        foreign_keys=[("generation_id", "generations", "id")],
    )
    db["training_runs"].create(
        {
            "id": int,
            "kind": str,  # dpo, kto, reward or sft
            "status": str,  # running, done, failed, cancelled
            "started_at": str,
            "finished_at": str,
            "adapter": str,
            "version": int,
            "folder": str,
            "params": str,  # JSON
            "metrics": str,  # JSON: loss, reward margin and accuracy per step; held-out before/after
            "data_hash": str,
        },
        pk="id",
        not_null=["kind", "status", "started_at"],
    )
    db["votes"].create_index(["generation_id", "participant"])
    db["generations"].create_index(["prompt"])


@migration
def m002_current_votes_view(db: Database) -> None:
    """Each participant's latest vote on each answer (anonymous votes each count once): what counting uses."""
    db.create_view(
        "current_votes",
        """
        SELECT v.* FROM votes v
        WHERE v.id = (
            SELECT max(w.id) FROM votes w
            WHERE w.generation_id = v.generation_id
              AND coalesce(w.participant, 'anonymous#' || w.id) = coalesce(v.participant, 'anonymous#' || v.id)
        )
        """,
    )


@migration
def m003_training_run_messages(db: Database) -> None:
    """What a run said last (progress, or why it failed), and its OS process, so it can be cancelled."""
    db["training_runs"].add_column("message", str)
    db["training_runs"].add_column("pid", int)
