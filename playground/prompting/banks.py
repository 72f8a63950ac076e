"""Example banks: tasks with worked exemplars and held-out test items, in Japanese and English, read from data/.

A bank is a JSON Lines file: a header line (task id, titles, instructions, scoring, labels), then one item a line.
Drop a new file into data/banks/ to add a task; a malformed file names the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from playground.errors import PlaygroundError

LANGS = ("en", "ja")
SPLITS = ("exemplar", "test")
SCORINGS = ("label", "number", "exact", "overlap")
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent.parent / "data" / "banks"


class BankError(PlaygroundError):
    """A bank file is malformed, or a task or exemplar count asked for is not there."""


@dataclass(frozen=True)
class Item:
    id: str
    lang: str  # "en" or "ja": the language of the instruction and the answer
    split: str  # "exemplar" (shown in prompts) or "test" (held out for evaluation)
    input: str
    answer: str
    reasoning: str = ""  # worked reasoning, for chain-of-thought exemplars


@dataclass(frozen=True)
class Bank:
    task: str
    title: dict[str, str]
    instruction: dict[str, str]
    scoring: str  # how answers are checked: a label, a number, an exact short answer, or word overlap
    labels: dict[str, tuple[str, ...]]
    items: tuple[Item, ...]
    path: Path

    def exemplars(self, lang: str) -> list[Item]:
        return [i for i in self.items if i.lang == lang and i.split == "exemplar"]

    def tests(self, lang: str) -> list[Item]:
        return [i for i in self.items if i.lang == lang and i.split == "test"]


def load_banks(folder: Path = DEFAULT_FOLDER) -> dict[str, Bank]:
    """Every *.jsonl bank in the folder, by task id."""
    banks = {}
    for path in sorted(Path(folder).glob("*.jsonl")):
        bank = load_bank(path)
        if bank.task in banks:
            raise BankError(f"{path}: task {bank.task!r} is also defined in {banks[bank.task].path}; rename one")
        banks[bank.task] = bank
    return banks


def load_bank(path: Path) -> Bank:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise BankError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    if not lines:
        raise BankError(f"{path}:1: the file is empty; its first line must be the task header")
    header = _parse(path, 1, lines[0])
    task = _text(header, "task", path, 1)
    scoring = _text(header, "scoring", path, 1)
    if scoring not in SCORINGS:
        raise BankError(f"{path}:1: scoring {scoring!r}; use one of {', '.join(SCORINGS)}")
    title = _per_lang(header, "title", path)
    instruction = _per_lang(header, "instruction", path)
    labels = {}
    if scoring == "label":
        raw = header.get("labels")
        if not isinstance(raw, dict) or any(not raw.get(lang) for lang in LANGS):
            raise BankError(f'{path}:1: a label task needs "labels" with a list for each of {", ".join(LANGS)}')
        labels = {lang: tuple(str(label) for label in raw[lang]) for lang in LANGS}

    items, seen = [], set()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        record = _parse(path, number, line)
        item = Item(
            id=_text(record, "id", path, number),
            lang=_text(record, "lang", path, number),
            split=_text(record, "split", path, number),
            input=_text(record, "input", path, number),
            answer=_text(record, "answer", path, number),
            reasoning=str(record.get("reasoning", "")),
        )
        if item.id in seen:
            raise BankError(f"{path}:{number}: id {item.id!r} is used twice; ids must be unique in a file")
        seen.add(item.id)
        if item.lang not in LANGS:
            raise BankError(f"{path}:{number}: lang {item.lang!r}; use one of {', '.join(LANGS)}")
        if item.split not in SPLITS:
            raise BankError(f"{path}:{number}: split {item.split!r}; use one of {', '.join(SPLITS)}")
        if item.split == "exemplar" and not item.reasoning.strip():
            raise BankError(f'{path}:{number}: exemplar {item.id!r} needs a "reasoning" for chain-of-thought prompts')
        if labels and item.answer not in labels[item.lang]:
            raise BankError(
                f"{path}:{number}: answer {item.answer!r} is not one of the {item.lang} labels "
                f"({', '.join(labels[item.lang])})"
            )
        items.append(item)
    return Bank(task, title, instruction, scoring, labels, tuple(items), path)


def _parse(path: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BankError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise BankError(f"{path}:{number}: each line must be a JSON object")
    return record


def _text(record: dict, key: str, path: Path, number: int) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BankError(f'{path}:{number}: "{key}" is missing or not a non-empty string')
    return value


def _per_lang(header: dict, key: str, path: Path) -> dict[str, str]:
    value = header.get(key)
    if not isinstance(value, dict) or any(not isinstance(value.get(lang), str) for lang in LANGS):
        raise BankError(f'{path}:1: "{key}" must give a text for each of {", ".join(LANGS)}')
    return {lang: value[lang] for lang in LANGS}
