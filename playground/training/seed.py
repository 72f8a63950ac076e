"""The project's own training data in data/: instruction examples (data/sft) and preference pairs
(data/preferences), in Japanese and English, each item marked train, dev or test: training uses only train; dev
compares candidate builds (`eval defaults --split dev`) so that test stays unseen until one is chosen.

They train the shipped adapters (`make adapters`) and can be mixed into training on feedback (`--include-seed`).
The decision step (`train decision`) also reads the harmful requests and look-alikes of data/drafts.
A malformed file names the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from playground.errors import PlaygroundError
from playground.prompting.banks import LANGS
from playground.prompting.formats import render_gemma_chat
from playground.training.data import END_OF_TURN, Example, Pair, Rated

DATA_FOLDER = Path(__file__).resolve().parent.parent.parent / "data"
SPLITS = ("train", "dev", "test")
AXES = ("helpful", "honest", "harmless")
SFT_FIELDS = ("id", "lang", "task", "split", "prompt", "response")
PREFERENCE_FIELDS = ("id", "lang", "axis", "split", "prompt", "chosen", "rejected")


class SeedDataError(PlaygroundError):
    """A file in data/sft or data/preferences is malformed."""


@dataclass(frozen=True)
class Record:
    """One line of a seed file: the common fields, and the whole object for the task-specific ones."""

    id: str
    lang: str
    split: str
    fields: dict

    def __getitem__(self, key: str):
        return self.fields[key]

    def get(self, key: str, default=None):
        return self.fields.get(key, default)


def chat_prompt(text: str) -> str:
    """A user's message as the instruction-tuned variants see it: one Gemma user turn, then the model's turn."""
    return render_gemma_chat([{"role": "user", "content": text}])


def read_records(folder: Path, required: tuple[str, ...]) -> list[Record]:
    """Every line of every *.jsonl file in folder (or of the one file `folder`), checked for the required text
    fields; ids unique."""
    records, seen = [], {}
    paths = [Path(folder)] if Path(folder).is_file() else sorted(Path(folder).glob("*.jsonl"))
    if not paths:
        raise SeedDataError(f"{folder}: no *.jsonl files; run from a checkout of the repository")
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SeedDataError(f"{where}: not valid JSON ({exc.msg}); fix the line") from None
            if not isinstance(raw, dict):
                raise SeedDataError(f"{where}: each line must be a JSON object")
            for key in required:
                if not isinstance(raw.get(key), str) or not raw[key].strip():
                    raise SeedDataError(f"{where}: {key!r} is missing or empty")
            if raw["lang"] not in LANGS or raw["split"] not in SPLITS:
                raise SeedDataError(f"{where}: lang must be one of {LANGS} and split one of {SPLITS}")
            if raw["id"] in seen:
                raise SeedDataError(f"{where}: id {raw['id']!r} is also used at {seen[raw['id']]}")
            seen[raw["id"]] = where
            records.append(Record(raw["id"], raw["lang"], raw["split"], raw))
    return records


def sft_records(folder: Path = DATA_FOLDER / "sft") -> list[Record]:
    return read_records(folder, SFT_FIELDS)


def preference_records(folder: Path = DATA_FOLDER / "preferences") -> list[Record]:
    records = read_records(folder, PREFERENCE_FIELDS)
    for record in records:
        if record["axis"] not in AXES:
            raise SeedDataError(f"{record.id}: axis {record['axis']!r}; use one of {', '.join(AXES)}")
    return records


def seed_examples(folder: Path = DATA_FOLDER / "sft") -> tuple[list[Example], list[Example]]:
    """(train, test) instruction examples in Gemma's turn format."""
    records = sft_records(folder)
    examples = {split: [Example(chat_prompt(r["prompt"]), r["response"].strip() + END_OF_TURN)
                        for r in records if r.split == split] for split in SPLITS}
    return examples["train"], examples["test"]


def seed_pairs(folder: Path = DATA_FOLDER / "preferences") -> tuple[list[Pair], list[Pair]]:
    """(train, test) preference pairs in Gemma's turn format."""
    records = preference_records(folder)
    pairs = {split: [pair_of(r) for r in records if r.split == split] for split in SPLITS}
    return pairs["train"], pairs["test"]


def pair_of(record: Record) -> Pair:
    """A preference record as a pair in Gemma's turn format."""
    return Pair(chat_prompt(record["prompt"]), record["chosen"].strip() + END_OF_TURN,
                record["rejected"].strip() + END_OF_TURN)


def seed_rated(folder: Path = DATA_FOLDER / "preferences") -> tuple[list[Rated], list[Rated]]:
    """(train, test) single rated answers for KTO: each pair's chosen answer is desirable, its rejected one not."""
    train, test = seed_pairs(folder)

    def unpair(pairs: list[Pair]) -> list[Rated]:
        return [rated for p in pairs for rated in (Rated(p.prompt, p.chosen, True), Rated(p.prompt, p.rejected, False))]

    return unpair(train), unpair(test)


@dataclass(frozen=True)
class Probe:
    """A training prompt whose answer must decline (a harmful request) or must not (a harmless look-alike)."""

    prompt: str  # in Gemma's turn format
    written: str  # the project's answer, closed by <end_of_turn>
    harmful: bool
    lang: str  # "en" or "ja"


def refusal_probes(folder: Path = DATA_FOLDER) -> list[Probe]:
    """The training split's harmful requests and look-alikes, from data/sft and data/preferences."""
    probes = [Probe(chat_prompt(r["prompt"]), r["response"].strip() + END_OF_TURN, r["task"] == "refusal", r["lang"])
              for r in sft_records(folder / "sft") if r.split == "train" and r["task"] in ("refusal", "lookalike")]
    probes += [Probe(chat_prompt(r["prompt"]), r["chosen"].strip() + END_OF_TURN, r["kind"] == "harmful", r["lang"])
               for r in preference_records(folder / "preferences")
               if r.split == "train" and r.get("kind") in ("harmful", "lookalike")]
    return probes


def draft_kind(record: Record) -> str | None:
    """A draft's kind of item: preference drafts say it as "kind", instruction drafts as "task"."""
    return record.get("kind") or record.get("task")


def decision_data(folder: Path = DATA_FOLDER, held_out_every: int = 5):
    """(DecisionData, held-out probes) for `train decision`: the training harmful requests and look-alikes of
    data/ and data/drafts, each prompt once, every `held_out_every`th of them (after a seeded shuffle) held out;
    the training helpful and honest pairs; the training instruction examples."""
    import random

    from playground.training.decision import DecisionData

    probes, seen = [], set()
    # each drafts file numbers its ids on its own
    drafts = [r for path in sorted((folder / "drafts").glob("*.jsonl"))
              for r in read_records(path, ("id", "lang", "split", "prompt"))]
    probes_of_drafts = [Probe(chat_prompt(r["prompt"]), (r.get("chosen") or r["response"]).strip() + END_OF_TURN,
                              draft_kind(r) in ("harmful", "refusal"), r.lang)
                        for r in drafts if r.split == "train" and draft_kind(r) in ("harmful", "refusal", "lookalike")]
    for probe in refusal_probes(folder) + probes_of_drafts:
        if probe.prompt not in seen:
            seen.add(probe.prompt)
            probes.append(probe)
    random.Random(0).shuffle(probes)
    held_out = probes[::held_out_every]
    train = [p for i, p in enumerate(probes) if i % held_out_every]
    pairs = [pair_of(r) for r in preference_records(folder / "preferences")
             if r.split == "train" and r["axis"] in ("helpful", "honest")]
    return DecisionData(train, pairs, seed_examples(folder / "sft")[0]), held_out
