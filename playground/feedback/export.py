"""Feedback as training data, in TRL's dataset formats.

dpo and reward: {"prompt", "chosen", "rejected"}; kto: {"prompt", "completion", "label"}; sft: {"messages"}.
Chat variants' rows are conversational (lists of {"role", "content"}); plain variants' rows are the exact text the
model saw. Preference pairs come from: a comparison's winner over its loser; a thumbs-up answer over a thumbs-down
answer to the same prompt; a correction over the answer it corrects. Ties, both-bad verdicts, evenly split votes
and duplicates are skipped and counted. The held-out split is by prompt, so no prompt is in both.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

from playground.errors import FeedbackError
from playground.feedback.store import FeedbackStore

FORMATS = ("dpo", "kto", "reward", "sft")
SPLITS = ("train", "test")
TEST_SHARE = 5  # one prompt in five is held out


@dataclass
class Export:
    rows: list[dict] = field(default_factory=list)
    used: Counter = field(default_factory=Counter)  # rows by where they came from
    skipped: Counter = field(default_factory=Counter)  # what was left out, by reason

    def report(self) -> str:
        used = ", ".join(f"{n} from {source}" for source, n in sorted(self.used.items())) or "none"
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())) or "none"
        return f"{len(self.rows)} rows ({used}); skipped: {skipped}"


def conversation(generation: dict) -> list[dict]:
    """The turns the answer replied to (the user's message last)."""
    messages = generation.get("messages")
    if isinstance(messages, str):
        messages = json.loads(messages)
    return messages or [{"role": "user", "content": generation["prompt"]}]


def prompt_split(generation: dict) -> str:
    """train or test, by a hash of the conversation: the same prompt always lands on the same side."""
    key = json.dumps(conversation(generation), ensure_ascii=False, sort_keys=True)
    return "test" if int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % TEST_SHARE == 0 else "train"


def _prompt(generation: dict):
    if generation.get("format") == "chat":
        return conversation(generation)
    return generation.get("rendered_prompt") or generation["prompt"]


def _completion(generation: dict, text: str):
    return [{"role": "assistant", "content": text}] if generation.get("format") == "chat" else text


def build(store: FeedbackStore, fmt: str, split: str | None = None) -> Export:
    if fmt not in FORMATS:
        raise FeedbackError(f"export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if split is not None and split not in SPLITS:
        raise FeedbackError(f"split {split!r}; use train or test (or leave it out for all rows)")
    generations = {g["id"]: g for g in store.query("SELECT * FROM generations")}
    net = Counter()
    for vote in store.current_votes():
        net[vote["generation_id"]] += vote["value"]
    export, seen = Export(), set()

    def add(generation: dict, row: dict, source: str) -> None:
        if split and prompt_split(generation) != split:
            export.skipped[f"in the {'test' if split == 'train' else 'train'} split"] += 1
            return
        key = json.dumps(row, ensure_ascii=False, sort_keys=True)
        if key in seen:
            export.skipped["duplicate"] += 1
            return
        seen.add(key)
        export.rows.append(row)
        export.used[source] += 1

    if fmt in ("dpo", "reward"):
        for chosen, rejected, source in _pairs(store, generations, net, export.skipped):
            row = {
                "prompt": _prompt(chosen["context"]),
                "chosen": _completion(chosen["context"], chosen["text"]),
                "rejected": _completion(chosen["context"], rejected),
            }
            add(chosen["context"], row, source)
    elif fmt == "kto":
        for generation_id, total in sorted(net.items()):
            generation = generations[generation_id]
            if total == 0:
                export.skipped["evenly split votes"] += 1
                continue
            row = {
                "prompt": _prompt(generation),
                "completion": _completion(generation, generation["response"]),
                "label": total > 0,
            }
            add(generation, row, "thumbs")
    else:
        for correction in store.query("SELECT * FROM corrections ORDER BY id"):
            generation = generations[correction["generation_id"]]
            messages = conversation(generation) + [{"role": "assistant", "content": correction["text"]}]
            add(generation, {"messages": messages}, "corrections")
        for generation_id, total in sorted(net.items()):
            if total > 0:
                generation = generations[generation_id]
                messages = conversation(generation) + [{"role": "assistant", "content": generation["response"]}]
                add(generation, {"messages": messages}, "thumbs up")
    return export


def _pairs(store: FeedbackStore, generations: dict, net: Counter, skipped: Counter):
    """(chosen, rejected text, source) for every preference the feedback states."""
    for comparison in store.query("SELECT * FROM comparisons ORDER BY id"):
        outcome = comparison["outcome"]
        if outcome not in ("left", "right"):
            skipped["tie" if outcome == "tie" else "both bad"] += 1
            continue
        winner, loser = (comparison["left_id"], comparison["right_id"])[:: 1 if outcome == "left" else -1]
        yield _side(generations[winner]), generations[loser]["response"], "comparisons"

    by_prompt: dict[str, dict[str, list]] = {}
    for generation_id, total in sorted(net.items()):
        generation = generations[generation_id]
        if total == 0:
            skipped["evenly split votes"] += 1
            continue
        key = json.dumps(conversation(generation), ensure_ascii=False, sort_keys=True)
        by_prompt.setdefault(key, {"up": [], "down": []})["up" if total > 0 else "down"].append(generation)
    for group in by_prompt.values():
        for up, down in product(group["up"], group["down"]):
            yield _side(up), down["response"], "thumbs"

    for correction in store.query("SELECT * FROM corrections ORDER BY id"):
        corrected = generations[correction["generation_id"]]
        if correction["text"].strip() == corrected["response"].strip():
            skipped["correction same as the answer"] += 1
            continue
        yield _side(corrected, correction["text"]), corrected["response"], "corrections"


def _side(generation: dict, text: str | None = None) -> dict:
    return {"context": generation, "text": generation["response"] if text is None else text}


def write_jsonl(rows: list[dict], out: Path) -> None:
    """Written to a temporary file beside `out`, then renamed: a failed export leaves no half file."""
    out = Path(out)
    try:
        handle, temp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    except OSError as exc:
        raise FeedbackError(f"could not write {out}: {exc.strerror or exc}; check the folder") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(temp, out)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise FeedbackError(f"could not write {out}: {exc.strerror or exc}; nothing was written") from None
