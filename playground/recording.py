"""Every answer shown is stored in feedback.db with what rebuilds its training example."""

from __future__ import annotations

from dataclasses import asdict

from playground.config import Variant, adapter_version
from playground.feedback import FeedbackStore
from playground.models.generation import Column, SamplingSettings
from playground.prompting.modes import PromptSpec


def record_answers(
    store: FeedbackStore,
    base_model: str,
    variants: tuple[Variant, ...],
    columns: list[Column],
    conversations: list[list[dict]],
    prompts: list[str],
    spec: PromptSpec,
    task: str | None,
    settings: SamplingSettings,
    session_id: str | None = None,
    participant: str | None = None,
) -> list[int]:
    """One generations row per column; returns their ids, in column order."""
    params = {**asdict(settings), "k": spec.k, "lang": spec.lang}
    ids = []
    for variant, column, messages, rendered in zip(variants, columns, conversations, prompts):
        ids.append(
            store.record_generation(
                variant=variant.name,
                prompt=messages[-1]["content"],
                response=column.text,
                session_id=session_id,
                participant=participant,
                base_model=base_model,
                adapter=variant.name if variant.adapter else None,
                adapter_version=adapter_version(variant.adapter),
                format=variant.format,
                prompt_mode=spec.mode,
                task=task,
                messages=messages,
                rendered_prompt=rendered,
                params=params,
                tokens=len(column.tokens),
                latency_ms=round(column.elapsed_s * 1000, 1),
                finish=column.finish,
            )
        )
    return ids
