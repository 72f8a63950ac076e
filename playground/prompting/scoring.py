"""Answer extraction and scoring per task, so that prompting modes compare on numbers.

label: the first of the task's labels the answer names; number: the number after "Answer:" / 「答え:」 (else the
last number); exact: the gold short answer appears in the answer's first line; overlap: word (English) or
character-bigram (Japanese) F1 against the reference.
"""

from __future__ import annotations

import re
import string
import unicodedata

from playground.prompting.banks import Bank, Item
from playground.prompting.modes import ANSWER_MARK, PLAIN_Q

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
PUNCTUATION = set(string.punctuation) | set("、。「」『』（）・！？：；“”‘’")


def normalize(text: str) -> str:
    """NFKC (full-width digits and letters to ASCII), lower case, no punctuation, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if ch in PUNCTUATION else ch for ch in text)
    return " ".join(text.split())


def _own_answer(text: str) -> str:
    """The text up to the next question a base model may go on to invent (it continues the Q/A pattern)."""
    text = unicodedata.normalize("NFKC", text)
    for question in PLAIN_Q.values():
        text = text.split(f"\n{unicodedata.normalize('NFKC', question)}")[0]
    return text


def _after_mark(text: str) -> str | None:
    """What follows the last "Answer:" / 「答え:」, if the text has one."""
    for mark in ANSWER_MARK.values():
        mark = unicodedata.normalize("NFKC", mark)
        if mark in text:
            return text.rsplit(mark, 1)[1]
    return None


def final_answer(text: str) -> str:
    """The line of a generated answer that states the result: the first one after the last answer mark (chain of
    thought), else the first line."""
    text = _own_answer(text)
    marked = _after_mark(text)
    lines = [line.strip() for line in (text if marked is None else marked).splitlines() if line.strip()]
    return lines[0] if lines else ""


def score(bank: Bank, item: Item, generated: str) -> float:
    """1.0 for right, 0.0 for wrong; overlap tasks score between."""
    answer = final_answer(generated)
    if bank.scoring == "label":
        return float(first_label(answer, bank.labels[item.lang]) == item.answer)
    if bank.scoring == "number":
        return float(extract_number(generated) == extract_number(item.answer))
    if bank.scoring == "exact":
        gold = normalize(item.answer)
        return float(bool(gold) and gold in normalize(answer))
    return overlap_f1(answer, item.answer, item.lang)


def first_label(text: str, labels: tuple[str, ...]) -> str | None:
    """The label named first in the text ("negative" is not read as containing a label "positive")."""
    found = [(normalize(text).find(normalize(label)), label) for label in labels]
    found = [(at, -len(label), label) for at, label in found if at >= 0]
    return min(found)[2] if found else None


def extract_number(text: str) -> float | None:
    """The first number after the last answer mark, else the last number of the answer (reasoning ends with the
    result); "1,200" reads as 1200."""
    text = _own_answer(text).replace(",", "")
    marked = _after_mark(text)
    if marked is not None and (first := NUMBER.search(marked)):
        return float(first.group())
    numbers = NUMBER.findall(text)
    return float(numbers[-1]) if numbers else None


def overlap_f1(prediction: str, reference: str, lang: str) -> float:
    pred, gold = _units(prediction, lang), _units(reference, lang)
    if not pred or not gold:
        return 0.0
    common = sum(min(pred.count(u), gold.count(u)) for u in set(pred))
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _units(text: str, lang: str) -> list[str]:
    text = normalize(text)
    if lang == "ja":
        chars = text.replace(" ", "")
        return [chars[i : i + 2] for i in range(len(chars) - 1)] or list(chars)
    return text.split()
