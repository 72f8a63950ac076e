"""The shipped example banks: eight tasks, each in Japanese and English, with enough exemplars and test items."""

from collections import Counter

import pytest

from playground.prompting.banks import LANGS, load_banks
from playground.prompting.scoring import extract_number

TASKS = {
    "sentiment", "translation", "arithmetic", "factual-qa",
    "summarization", "keywords", "polite-rewrite", "hhh-judgement",
}


@pytest.fixture(scope="module")
def banks():
    return load_banks()


def test_every_task_is_shipped(banks):
    assert TASKS <= set(banks)


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("lang", LANGS)
def test_each_bank_has_enough_exemplars_and_held_out_items(banks, task, lang):
    bank = banks[task]
    exemplars, tests = bank.exemplars(lang), bank.tests(lang)
    assert len(exemplars) >= 8
    assert len(tests) >= 20
    assert not {e.input for e in exemplars} & {t.input for t in tests}  # held-out means not shown
    assert len({t.input for t in tests}) == len(tests)
    assert bank.title[lang] and bank.instruction[lang]


def test_label_tasks_are_balanced(banks):
    for task in ("sentiment", "hhh-judgement"):
        for lang in LANGS:
            counts = Counter(t.answer for t in banks[task].tests(lang))
            assert len(counts) == len(banks[task].labels[lang]) and min(counts.values()) >= 6, (task, lang, counts)


def test_arithmetic_answers_are_integers_and_reasoning_ends_with_them(banks):
    bank = banks["arithmetic"]
    for item in bank.items:
        assert item.answer.isdigit(), item.id
        if item.split == "exemplar":
            assert extract_number(item.reasoning) == int(item.answer), item.id
