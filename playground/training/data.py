"""Feedback pairs as plain text examples for the trainers, split by prompt."""

from __future__ import annotations

from dataclasses import dataclass

from playground.errors import PlaygroundError
from playground.feedback import FeedbackStore
from playground.feedback.export import build
from playground.prompting.formats import END_OF_TURN, render_gemma_chat

MIN_PAIRS = 8  # fewer than this and a DPO run learns noise
MIN_EXAMPLES = 4  # ideal answers and upvoted answers for SFT


class NotEnoughData(PlaygroundError):
    """Too few examples to train on."""


@dataclass(frozen=True)
class Pair:
    prompt: str  # the exact text the model sees
    chosen: str
    rejected: str


def as_text(prompt, completion) -> tuple[str, str]:
    """TRL rows to the text the model sees: chat turns in Gemma's format, each answer closed by <end_of_turn>."""
    if isinstance(prompt, list):
        return render_gemma_chat(prompt), completion[0]["content"] + END_OF_TURN
    return prompt, completion


def preference_pairs(store: FeedbackStore, split: str) -> list[Pair]:
    rows = build(store, "dpo", split).rows
    pairs = []
    for row in rows:
        prompt, chosen = as_text(row["prompt"], row["chosen"])
        _, rejected = as_text(row["prompt"], row["rejected"])
        pairs.append(Pair(prompt, chosen, rejected))
    return pairs


def training_pairs(store: FeedbackStore, minimum: int = MIN_PAIRS) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out) pairs; a clear message when there are too few to train on."""
    train, test = preference_pairs(store, "train"), preference_pairs(store, "test")
    if len(train) < minimum:
        raise NotEnoughData(
            f"{len(train)} preference pairs to train on ({len(test)} more held out), and DPO needs at least "
            f"{minimum}. Collect more: blind votes in the Arena, thumbs up and down on answers to the same "
            "prompt, or ideal answers in the Compare tab"
        )
    return train, test


@dataclass(frozen=True)
class Example:
    prompt: str  # the exact text the model sees
    completion: str  # the answer it should learn to give


def sft_examples(store: FeedbackStore, minimum: int = MIN_EXAMPLES) -> tuple[list[Example], list[Example]]:
    """(train, held-out) examples from ideal answers and upvoted answers, split by prompt."""
    def examples(split: str) -> list[Example]:
        rows = build(store, "sft", split).rows
        return [Example(render_gemma_chat(r["messages"][:-1]), r["messages"][-1]["content"] + END_OF_TURN) for r in rows]

    train, test = examples("train"), examples("test")
    if len(train) < minimum:
        raise NotEnoughData(
            f"{len(train)} examples to train on ({len(test)} more held out), and SFT needs at least {minimum}. "
            "Collect more: write ideal answers in the Compare tab, or give thumbs up to good answers"
        )
    return train, test


@dataclass(frozen=True)
class Rated:
    prompt: str  # the exact text the model sees
    completion: str
    label: bool  # thumbs up (desirable) or down


def kto_examples(store: FeedbackStore, minimum: int = MIN_PAIRS) -> tuple[list[Rated], list[Rated]]:
    """(train, held-out) thumbed answers, each on its own: KTO learns from thumbs that form no pairs."""
    def examples(split: str) -> list[Rated]:
        rated = []
        for row in build(store, "kto", split).rows:
            prompt, completion = as_text(row["prompt"], row["completion"])
            rated.append(Rated(prompt, completion, row["label"]))
        return rated

    train, test = examples("train"), examples("test")
    labels = {r.label for r in train}
    if len(train) < minimum or (minimum and labels != {True, False}):
        raise NotEnoughData(
            f"{len(train)} rated answers to train on ({sum(r.label for r in train)} up, "
            f"{sum(not r.label for r in train)} down; {len(test)} more held out), and KTO needs at least {minimum} "
            "with both thumbs up and thumbs down. Collect more: 👍 and 👎 on answers in the Compare tab"
        )
    return train, test
