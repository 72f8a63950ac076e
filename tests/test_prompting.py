"""Prompting modes rendered as exact strings, every mode x format; banks validated with file and line."""

import json

import pytest

from playground.errors import GenerationError
from playground.prompting.banks import BankError, load_bank
from playground.prompting.modes import MODES, PromptSpec, build_prompt

HEADER = {
    "task": "toy",
    "title": {"en": "Toy", "ja": "おもちゃ"},
    "instruction": {"en": "Add the numbers.", "ja": "数を足してください。"},
    "scoring": "number",
}
ITEMS = [
    {"id": "e1", "lang": "en", "split": "exemplar", "input": "1+1", "answer": "2", "reasoning": "One and one make two."},
    {"id": "e2", "lang": "en", "split": "exemplar", "input": "2+3", "answer": "5", "reasoning": "Two and three make five."},
    {"id": "j1", "lang": "ja", "split": "exemplar", "input": "1+2", "answer": "3", "reasoning": "1と2で3です。"},
    {"id": "t1", "lang": "en", "split": "test", "input": "4+4", "answer": "8"},
]


def write_bank(tmp_path, header=HEADER, items=ITEMS, name="toy.jsonl"):
    path = tmp_path / name
    lines = [json.dumps(header, ensure_ascii=False)] + [json.dumps(i, ensure_ascii=False) for i in items]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def bank(tmp_path):
    return load_bank(write_bank(tmp_path))


PLAIN = {
    "zero": "Add the numbers.\n\nQ: 4+4\nA:",
    "one": "Add the numbers.\n\nQ: 1+1\nA: 2\n\nQ: 4+4\nA:",
    "few": "Add the numbers.\n\nQ: 1+1\nA: 2\n\nQ: 2+3\nA: 5\n\nQ: 4+4\nA:",
    "cot": "Add the numbers.\n\nQ: 4+4\nA: Let's think step by step.",
    "few-cot": (
        "Add the numbers.\n\n"
        "Q: 1+1\nA: One and one make two.\nAnswer: 2\n\n"
        "Q: 2+3\nA: Two and three make five.\nAnswer: 5\n\n"
        "Q: 4+4\nA: Let's think step by step."
    ),
}
U, M, E = "<start_of_turn>user\n", "<start_of_turn>model\n", "<end_of_turn>\n"
CHAT = {
    "zero": f"{U}Add the numbers.\n\n4+4{E}{M}",
    "one": f"{U}Add the numbers.\n\n1+1{E}{M}2{E}{U}4+4{E}{M}",
    "few": f"{U}Add the numbers.\n\n1+1{E}{M}2{E}{U}2+3{E}{M}5{E}{U}4+4{E}{M}",
    "cot": f"{U}Add the numbers.\n\n4+4\nLet's think step by step.{E}{M}",
    "few-cot": (
        f"{U}Add the numbers.\n\n1+1{E}{M}One and one make two.\nAnswer: 2{E}"
        f"{U}2+3{E}{M}Two and three make five.\nAnswer: 5{E}"
        f"{U}4+4\nLet's think step by step.{E}{M}"
    ),
}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_in_plain_format(bank, mode):
    assert build_prompt(PromptSpec(mode=mode, k=2), bank, "4+4", "plain") == PLAIN[mode]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_in_chat_format(bank, mode):
    assert build_prompt(PromptSpec(mode=mode, k=2), bank, "4+4", "chat") == CHAT[mode]


def test_japanese_uses_japanese_instruction_labels_and_trigger(bank):
    assert build_prompt(PromptSpec(mode="one", lang="ja"), bank, "2+2", "plain") == (
        "数を足してください。\n\n質問: 1+2\n回答: 3\n\n質問: 2+2\n回答:"
    )
    assert build_prompt(PromptSpec(mode="few-cot", k=1, lang="ja"), bank, "2+2", "chat") == (
        f"{U}数を足してください。\n\n1+2{E}{M}1と2で3です。\n答え: 3{E}{U}2+2\nステップごとに考えてみましょう。{E}{M}"
    )


def test_history_comes_after_the_exemplars(bank):
    history = [{"role": "user", "content": "9+1"}, {"role": "assistant", "content": "10"}]
    spec = PromptSpec(mode="one")
    assert build_prompt(spec, bank, "4+4", "plain", history) == (
        "Add the numbers.\n\nQ: 1+1\nA: 2\n\nQ: 9+1\nA: 10\n\nQ: 4+4\nA:"
    )
    assert build_prompt(spec, bank, "4+4", "chat", history) == (
        f"{U}Add the numbers.\n\n1+1{E}{M}2{E}{U}9+1{E}{M}10{E}{U}4+4{E}{M}"
    )


def test_free_chat_without_a_bank():
    assert build_prompt(PromptSpec(), None, "日本の首都は", "plain") == "日本の首都は"
    assert build_prompt(PromptSpec(mode="cot", lang="ja"), None, "7×8は？", "chat") == (
        f"{U}7×8は？\nステップごとに考えてみましょう。{E}{M}"
    )
    with pytest.raises(GenerationError, match="few needs worked examples: choose a task bank"):
        build_prompt(PromptSpec(mode="few"), None, "hi", "plain")


def test_exemplars_never_contain_the_query(bank):
    prompt = build_prompt(PromptSpec(mode="one"), bank, "1+1", "plain")
    assert prompt == "Add the numbers.\n\nQ: 2+3\nA: 5\n\nQ: 1+1\nA:"  # 1+1 is skipped as an exemplar


def test_k_larger_than_the_bank_is_an_error(bank):
    with pytest.raises(BankError, match="k = 5, but the toy bank has 2 en exemplars to show; choose k between 1 and 2"):
        build_prompt(PromptSpec(mode="few", k=5), bank, "4+4", "plain")
    with pytest.raises(GenerationError, match="unknown prompting mode 'two'"):
        build_prompt(PromptSpec(mode="two"), bank, "4+4", "plain")


@pytest.mark.parametrize(
    "change, line, message",
    [
        (lambda h, i: i.__setitem__(1, {**i[1], "lang": "fr"}), 3, "lang 'fr'; use one of en, ja"),
        (lambda h, i: i.__setitem__(0, {**i[0], "reasoning": ""}), 2, "needs a \"reasoning\""),
        (lambda h, i: i.__setitem__(2, {**i[2], "id": "e1"}), 4, "id 'e1' is used twice"),
        (lambda h, i: i.__setitem__(3, {k: v for k, v in i[3].items() if k != "answer"}), 5, '"answer" is missing'),
        (lambda h, i: i.__setitem__(3, {**i[3], "split": "train"}), 5, "split 'train'"),
        (lambda h, i: h.__setitem__("scoring", "bleu"), 1, "scoring 'bleu'"),
        (lambda h, i: h.__setitem__("scoring", "label"), 1, 'a label task needs "labels"'),
        (lambda h, i: h.__setitem__("instruction", {"en": "x"}), 1, '"instruction" must give a text for each of en, ja'),
    ],
)
def test_bank_errors_name_file_and_line(tmp_path, change, line, message):
    header, items = dict(HEADER), [dict(i) for i in ITEMS]
    change(header, items)
    path = write_bank(tmp_path, header, items)
    with pytest.raises(BankError) as error:
        load_bank(path)
    assert f"{path}:{line}:" in str(error.value)
    assert message in str(error.value)


def test_broken_json_line_is_named(tmp_path):
    path = write_bank(tmp_path)
    path.write_text(path.read_text(encoding="utf-8") + '{"id": "x", "lang": \n', encoding="utf-8")
    with pytest.raises(BankError, match=f"{path}:6: not valid JSON"):
        load_bank(path)


def test_label_answers_must_be_labels(tmp_path):
    header = {**HEADER, "scoring": "label", "labels": {"en": ["yes", "no"], "ja": ["はい", "いいえ"]}}
    items = [{**ITEMS[0], "answer": "maybe"}]
    with pytest.raises(BankError, match="answer 'maybe' is not one of the en labels \\(yes, no\\)"):
        load_bank(write_bank(tmp_path, header, items))
