"""Prompting modes: zero-shot, one-shot, few-shot, zero-shot and few-shot chain-of-thought.

In-context learning (文脈内学習): the same model, no weights changed, shown zero, one or several worked examples, or
asked to reason step by step. A mode turns (bank, k, language, message, history) into the turns a variant sees;
formats.render then writes them as plain completion text or as Gemma's chat turns.
"""

from __future__ import annotations

from dataclasses import dataclass

from playground.errors import GenerationError
from playground.prompting.banks import Bank, BankError, Item
from playground.prompting.formats import neutral, render

MODES = ("zero", "one", "few", "cot", "few-cot")
MODE_TITLES = {
    "zero": "zero-shot",
    "one": "one-shot",
    "few": "few-shot",
    "cot": "zero-shot chain-of-thought",
    "few-cot": "few-shot chain-of-thought",
}
COT_TRIGGER = {"en": "Let's think step by step.", "ja": "ステップごとに考えてみましょう。"}
ANSWER_MARK = {"en": "Answer:", "ja": "答え:"}  # chain-of-thought answers end with this, then the answer
PLAIN_Q = {"en": "Q:", "ja": "質問:"}
PLAIN_A = {"en": "A:", "ja": "回答:"}


@dataclass(frozen=True)
class PromptSpec:
    """What the prompting controls say."""

    mode: str = "zero"  # one of MODES
    k: int = 3  # exemplars for few-shot modes
    lang: str = "en"  # language of the instruction and exemplars
    system: str = ""  # extra instruction placed before everything


def exemplar_count(mode: str, k: int) -> int:
    if mode not in MODES:
        raise GenerationError(f"unknown prompting mode {mode!r}; choose one of {', '.join(MODES)}")
    return {"zero": 0, "cot": 0, "one": 1}.get(mode, k)


def pick_exemplars(bank: Bank, lang: str, count: int, query: str) -> list[Item]:
    """The bank's first `count` exemplars in `lang`, never the query itself."""
    pool = [item for item in bank.exemplars(lang) if item.input.strip() != query.strip()]
    if count < 0 or count > len(pool):
        raise BankError(
            f"k = {count}, but the {bank.task} bank has {len(pool)} {lang} exemplars to show; "
            f"choose k between 1 and {len(pool)}"
        )
    return pool[:count]


def build_prompt(spec: PromptSpec, bank: Bank | None, message: str, fmt: str, history: list[dict] = ()) -> str:
    """The exact text a variant of format `fmt` sees for `message` under `spec`.

    Without a bank (free chat), the message goes as typed, with the chain-of-thought trigger in "cot" mode;
    modes that need exemplars are refused.
    """
    count = exemplar_count(spec.mode, spec.k)
    cot = spec.mode in ("cot", "few-cot")
    if bank is None:
        if count:
            raise GenerationError(f"{spec.mode} needs worked examples: choose a task bank, or use zero-shot")
        text = f"{message.strip()}\n{COT_TRIGGER[spec.lang]}" if cot else message
        return render([*history, {"role": "user", "content": text}], fmt, system=spec.system)
    exemplars = pick_exemplars(bank, spec.lang, count, message) if count else []
    instruction = "\n".join(t for t in (spec.system.strip(), bank.instruction[spec.lang]) if t)
    if fmt == "plain":
        return _plain(instruction, exemplars, list(history), message, spec.lang, cot, spec.mode == "few-cot")
    if fmt == "chat":
        return _chat(instruction, exemplars, list(history), message, spec.lang, cot, spec.mode == "few-cot")
    raise GenerationError(f"unknown prompt format {fmt!r}; use 'plain' or 'chat'")


def _worked(item: Item, lang: str, reasoning: bool) -> str:
    if reasoning:
        return f"{item.reasoning.strip()}\n{ANSWER_MARK[lang]} {item.answer}"
    return item.answer


def _plain(instruction, exemplars, history, message, lang, cot, worked) -> str:
    """Q/A blocks: base models continue the pattern they are shown."""
    q, a = PLAIN_Q[lang], PLAIN_A[lang]
    blocks = [instruction] if instruction else []
    blocks += [f"{q} {e.input.strip()}\n{a} {_worked(e, lang, worked)}" for e in exemplars]
    for user, assistant in zip(history[::2], history[1::2]):
        blocks.append(f"{q} {neutral(user['content'].strip())}\n{a} {neutral(assistant['content'].strip())}")
    last = f"{q} {neutral(message.strip())}\n{a}"
    if cot:
        last += f" {COT_TRIGGER[lang]}"
    return "\n\n".join(blocks + [last])


def _chat(instruction, exemplars, history, message, lang, cot, worked) -> str:
    """Exemplars become earlier user/assistant turns; the instruction opens the first user turn."""
    turns = []
    for e in exemplars:
        turns += [{"role": "user", "content": e.input}, {"role": "assistant", "content": _worked(e, lang, worked)}]
    turns += history
    turns.append({"role": "user", "content": f"{message.strip()}\n{COT_TRIGGER[lang]}" if cot else message})
    return render(turns, "chat", system=instruction)
