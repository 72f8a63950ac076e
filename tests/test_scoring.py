"""Answer extraction and scoring, on the outputs models really give: chatter, reasoning, invented follow-ups."""

import pytest

from playground.prompting.banks import Bank, Item
from playground.prompting.scoring import extract_number, final_answer, first_label, overlap_f1, score


def bank(scoring, labels=None):
    return Bank("t", {}, {}, scoring, labels or {}, (), None)


@pytest.mark.parametrize(
    "text, expected",
    [
        (" 12", 12),
        ("Tom has 3 bags of 4, so 3 × 4 = 12. He eats 2, so 12 - 2 = 10.\nAnswer: 10", 10),
        ("3 × 4 = 12, then 12 − 2 = 10. Answer: 10 apples.\n\nQ: What is 5+5?\nA: 10", 10),
        ("4個ずつ3袋で12個。2個食べたので10個です。\n答え: 10", 10),
        ("全部で１，２００円です。\n答え：１，２００", 1200),  # full-width digits, comma and colon
        ("First 5 + 7 = 12, so the total is 12", 12),  # no answer mark: the last number
        ("Answer: -3", -3),
        ("I am not sure.", None),
        ("Answer: 7\nQ: A train has 40 seats", 7),
    ],
)
def test_numbers_are_read_from_tricky_outputs(text, expected):
    assert extract_number(text) == expected


def test_a_question_the_model_invents_is_not_its_answer():
    assert extract_number(" 8\n\nQ: 9+9\nA: 18") == 8
    assert final_answer(" Paris\n\nQ: Capital of Italy?\nA: Rome") == "Paris"
    assert final_answer(" 東京\n\n質問: イタリアの首都は？\n回答: ローマ") == "東京"


def test_final_answer_after_the_mark():
    assert final_answer("The review praises the food.\nAnswer: positive") == "positive"
    assert final_answer("\n\n  negative. The plot was dull.") == "negative. The plot was dull."


@pytest.mark.parametrize(
    "text, expected",
    [
        ("positive", "positive"),
        ("Negative!", "negative"),
        ("It is positive, not negative", "positive"),  # the first named wins
        ("ネガティブです", "ネガティブ"),
        ("neutral", None),
    ],
)
def test_first_label(text, expected):
    assert first_label(text, ("positive", "negative", "ポジティブ", "ネガティブ")) == expected


def test_scores():
    labels = bank("label", {"en": ("positive", "negative"), "ja": ("ポジティブ", "ネガティブ")})
    item = Item("1", "en", "test", "Loved it", "positive")
    assert score(labels, item, "Let's see. The reviewer loved it.\nAnswer: positive") == 1.0
    assert score(labels, item, " negative") == 0.0
    exact = bank("exact")
    assert score(exact, Item("2", "ja", "test", "日本の首都は？", "東京"), " 東京です。") == 1.0
    assert score(exact, Item("3", "en", "test", "Capital of France?", "Paris"), " Lyon") == 0.0
    number = bank("number")
    assert score(number, Item("4", "en", "test", "q", "10"), "so 12 - 2 = 10.\nAnswer: 10") == 1.0


def test_overlap_is_word_f1_in_english_and_bigram_f1_in_japanese():
    assert overlap_f1("the cat sat", "the cat sat", "en") == 1.0
    assert overlap_f1("the cat", "the cat sat down", "en") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert overlap_f1("dog", "cat", "en") == 0.0
    assert overlap_f1("東京に行く", "東京へ行く", "ja") == pytest.approx(0.5)  # 東京 and 行く of 4 bigrams each
