"""The in-context-learning table: a bank's held-out items through each prompting mode on one variant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from playground.config import Variant
from playground.models.generation import SamplingSettings, generate_all
from playground.models.runtime import Runtime
from playground.prompting.banks import Bank
from playground.prompting.modes import PLAIN_Q, PromptSpec, build_prompt
from playground.prompting.scoring import score

BATCH = 8  # rows per generate call: one batched call costs far less than eight single ones
MAX_TOKENS = {"answer": 64, "reasoning": 192}  # chain of thought needs room to reason


@dataclass
class ModeResult:
    accuracy: float  # mean score: share right, or mean overlap F1 for generation tasks
    n: int
    examples: list[dict]  # item id, prompt, output and score, for a closer look


def evaluate(
    runtime: Runtime,
    variant: Variant,
    bank: Bank,
    modes: list[str],
    lang: str,
    k: int = 3,
    limit: int | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, ModeResult]:
    """Greedy answers to the bank's test items in `lang`, scored, per mode."""
    items = bank.tests(lang)[:limit]
    adapter = variant.name if variant.adapter else None
    results = {}
    for mode in modes:
        spec = PromptSpec(mode=mode, k=k, lang=lang)
        prompts = [build_prompt(spec, bank, item.input, variant.format) for item in items]
        cot = mode in ("cot", "few-cot")
        settings = SamplingSettings(
            max_new_tokens=MAX_TOKENS["reasoning" if cot else "answer"],
            # A base model goes on to ask itself the next question; stop it there.
            stop=tuple(f"\n{q}" for q in PLAIN_Q.values()) if variant.format == "plain" else (),
        )
        outputs = []
        for start in range(0, len(prompts), BATCH):
            rows = prompts[start : start + BATCH]
            outputs += [column.text for column in generate_all(runtime, rows, [adapter] * len(rows), settings)]
            log(f"{bank.task} {lang} {mode}: {len(outputs)}/{len(items)}")
        scores = [score(bank, item, output) for item, output in zip(items, outputs)]
        examples = [
            {"id": item.id, "prompt": prompt, "output": output, "score": round(value, 3)}
            for item, prompt, output, value in zip(items, prompts, outputs, scores)
        ]
        results[mode] = ModeResult(round(sum(scores) / len(scores), 3) if scores else 0.0, len(scores), examples)
    return results
