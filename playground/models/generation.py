"""Side-by-side generation: one batched `generate` over several adapters, each row streamed to its own column."""

from __future__ import annotations

import queue
import threading
from collections import deque
import time
from dataclasses import dataclass, field, replace
from typing import Iterator

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from playground.errors import GenerationError
from playground.models import model_thread
from playground.models.runtime import Runtime
from playground.prompting.formats import END_OF_TURN


@dataclass(frozen=True)
class SamplingSettings:
    """How tokens are chosen. temperature 0 means greedy."""

    max_new_tokens: int = 128  # answer length cap, in tokens
    min_new_tokens: int = 0  # end-of-sequence is ignored before this many tokens (benchmarks use it)
    temperature: float = 0.0  # 0 = greedy (deterministic); higher = more varied
    top_p: float = 1.0  # nucleus sampling: keep the smallest set of tokens with this much probability
    top_k: int = 0  # keep only the k likeliest tokens; 0 = no limit
    repetition_penalty: float = 1.0  # >1 discourages repeating earlier tokens
    seed: int | None = None  # fixes sampling for reproducible runs
    stop: tuple[str, ...] = ()  # extra strings that end an answer (not included in it)

    def validate(self) -> "SamplingSettings":
        checks = [
            (1 <= self.max_new_tokens <= 4096, "max_new_tokens", "between 1 and 4096"),
            (0 <= self.min_new_tokens <= self.max_new_tokens, "min_new_tokens", "between 0 and max_new_tokens"),
            (0 <= self.temperature <= 5, "temperature", "between 0 (greedy) and 5"),
            (0 < self.top_p <= 1, "top_p", "above 0 and at most 1"),
            (0 <= self.top_k <= 1000, "top_k", "between 0 (off) and 1000"),
            (0.5 <= self.repetition_penalty <= 2, "repetition_penalty", "between 0.5 and 2 (1 = off)"),
        ]
        for ok, name, allowed in checks:
            if not ok:
                raise GenerationError(f"{name} = {getattr(self, name)!r} is out of range; use a value {allowed}")
        if any(not s for s in self.stop):
            raise GenerationError("an empty stop string would end every answer at once; remove it")
        return self

    def generate_kwargs(self) -> dict:
        if self.temperature == 0:
            return {"do_sample": False, "repetition_penalty": self.repetition_penalty}
        return {
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k or None,
            "repetition_penalty": self.repetition_penalty,
        }


@dataclass
class Column:
    """One row's answer so far."""

    text: str = ""
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None  # None while running; then "eos", "stop", "length" or "cancelled"
    first_token_s: float | None = None  # seconds from the request to this row's first token
    elapsed_s: float = 0.0  # seconds from the request to this row's latest token
    # for an adapter with a refuse-or-answer decision (decision_gate.py): (refused, the probe's score)
    decision: tuple[bool, float] | None = None


class _ColumnStreamer(BaseStreamer):
    """generate() hands us the prompt, then one (batch,) tensor of new tokens per step; we split it by row.

    transformers' own streamers accept batch size 1 only.
    """

    def __init__(self, tokenizer, rows: int, stop_ids: set[int], stop_strings: tuple[str, ...], started: float):
        self.tokenizer = tokenizer
        self.columns = [Column() for _ in range(rows)]
        self.stop_ids = stop_ids
        self.stop_strings = stop_strings
        self.started = started
        self.updates: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first call carries the prompt ids
            self._prompt_seen = True
            return
        step_tokens = value.reshape(len(self.columns), -1)[:, -1].tolist()  # (batch,)
        now = time.perf_counter() - self.started
        for column, token in zip(self.columns, step_tokens):
            if column.finish is not None:
                continue  # generate pads rows that already ended
            if column.first_token_s is None:
                column.first_token_s = now
            column.elapsed_s = now
            if token in self.stop_ids:
                column.finish = "eos"
                continue
            column.tokens.append(token)
            column.text = self.tokenizer.decode(column.tokens, skip_special_tokens=True)
            for stop in self.stop_strings:
                cut = column.text.find(stop)
                if cut >= 0:
                    column.text, column.finish = column.text[:cut], "stop"
        self.updates.put(self.snapshot())

    def end(self) -> None:
        pass  # the generating thread signals the end itself, after generate() returns or fails

    def snapshot(self) -> list[Column]:
        return [replace(c, tokens=list(c.tokens)) for c in self.columns]


class _StopRows(StoppingCriteria):
    """Ends rows that hit a stop string (per row), or every row when the user cancels."""

    def __init__(self, streamer: _ColumnStreamer, *cancels: threading.Event):
        self.streamer, self.cancels = streamer, cancels

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        if any(c.is_set() for c in self.cancels):
            return torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        done = [c.finish is not None for c in self.streamer.columns]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def stop_token_ids(tokenizer) -> set[int]:
    """End of sequence and, where the vocabulary has it, end of a chat turn."""
    ids = {tokenizer.eos_token_id}
    turn_end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if isinstance(turn_end, int) and turn_end != tokenizer.unk_token_id:
        ids.add(turn_end)
    return {i for i in ids if i is not None}


def stream_side_by_side(
    runtime: Runtime,
    prompts: list[str],
    adapters: list[str | None],
    settings: SamplingSettings = SamplingSettings(),
    cancel: threading.Event | None = None,
) -> Iterator[list[Column]]:
    """Generate every (prompt, adapter) row in ONE batched generate call; yield all columns after each step.

    `adapters[i]` is an adapter name loaded in the runtime, or None for the bare base.
    Stopping the iteration early (closing the generator) cancels the generation.
    """
    if len(prompts) != len(adapters) or not prompts:
        raise GenerationError("give one prompt per column, and at least one column")
    if any(not p.strip() for p in prompts):
        raise GenerationError("the prompt is empty; type a question or some text to continue")
    settings.validate()
    names = runtime.adapter_names(adapters)
    cancel = cancel or threading.Event()
    abandoned = threading.Event()  # set when the consumer stops listening
    tokenizer = runtime.tokenizer
    batch = tokenizer(prompts, return_tensors="pt", padding=True).to(runtime.device)  # (B, T), left-padded
    stop_ids = stop_token_ids(tokenizer)
    streamer = _ColumnStreamer(tokenizer, len(prompts), stop_ids, settings.stop, time.perf_counter())
    kwargs = dict(
        **batch,
        **settings.generate_kwargs(),
        max_new_tokens=settings.max_new_tokens,
        min_new_tokens=settings.min_new_tokens or None,
        eos_token_id=sorted(stop_ids),
        pad_token_id=tokenizer.pad_token_id,
        streamer=streamer,
        stopping_criteria=StoppingCriteriaList([_StopRows(streamer, cancel, abandoned)]),
    )

    def run() -> list[tuple[bool, float] | None]:
        try:
            with torch.inference_mode(), runtime.mixed_batch(names) as extra:
                if settings.seed is not None:
                    torch.manual_seed(settings.seed)
                runtime.model.generate(**kwargs, **extra)
            return runtime.decided(names)  # before another job on the model thread replaces them
        finally:
            streamer.updates.put(None)

    if model_thread.on_model_thread():  # it would wait for itself
        raise RuntimeError("stream_side_by_side cannot be called from the model thread")
    job = model_thread.submit(run)
    try:
        while (update := streamer.updates.get()) is not None:
            yield update
    finally:
        abandoned.set()  # a consumer that stops listening stops the generation too
    decisions = job.result()  # re-raises what generate() raised
    final = streamer.snapshot()
    for column, decision in zip(final, decisions):
        column.decision = decision
        if column.finish is None:
            column.finish = "cancelled" if cancel.is_set() else "length"
    yield final


def model_input_text(runtime: Runtime, prompt: str) -> str:
    """The prompt as the model receives it: tokenized and decoded again, special tokens (<bos>) shown."""
    return runtime.tokenizer.decode(runtime.tokenizer(prompt)["input_ids"], skip_special_tokens=False)


def generate_all(
    runtime: Runtime, prompts: list[str], adapters: list[str | None], settings: SamplingSettings = SamplingSettings()
) -> list[Column]:
    """Every row's whole answer, from one batched call (no streaming)."""
    return deque(stream_side_by_side(runtime, prompts, adapters, settings), maxlen=1)[0]  # the last update


def generate_one(runtime: Runtime, prompt: str, adapter: str | None, settings: SamplingSettings = SamplingSettings()) -> Column:
    """The whole answer of one variant."""
    return generate_all(runtime, [prompt], [adapter], settings)[0]


@dataclass(frozen=True)
class BestOfN:
    """Best-of-n decoding: n sampled answers, the one the reward model scores highest kept."""

    best: Column
    scores: list[float]  # every candidate's reward, in sampling order
    candidates: list[Column]


GREEDY_FALLBACK_TEMPERATURE = 0.8  # n greedy answers would be one answer n times


def sampled_for_best_of_n(settings: SamplingSettings) -> SamplingSettings:
    """Best-of-n needs sampling: greedy settings sample at a moderate temperature instead."""
    return settings if settings.temperature > 0 else replace(settings, temperature=GREEDY_FALLBACK_TEMPERATURE)


def pick_best(runtime: Runtime, judged_prompt: str, candidates: list[Column]) -> BestOfN:
    """Score candidates with the runtime's reward model; keep the highest (the first of equals)."""
    scores = runtime.reward_scores(judged_prompt, [c.text for c in candidates])
    return BestOfN(candidates[scores.index(max(scores))], scores, candidates)


def best_of_n(runtime: Runtime, prompt: str, adapter: str | None, n: int, judged_prompt: str,
              settings: SamplingSettings = SamplingSettings()) -> BestOfN:
    """Sample n answers from one variant in one batch and keep the one the reward model prefers.

    `judged_prompt` is the conversation as the reward model was trained to read it (Gemma's chat turns), whatever
    format the variant itself was prompted in."""
    if not 1 <= n <= 16:
        raise GenerationError(f"best-of-n = {n}: use 1 to 16 samples")
    if runtime.reward is None:
        raise GenerationError("best-of-n needs a reward model: train one (`train reward`) and load it")
    candidates = generate_all(runtime, [prompt] * n, [adapter] * n, sampled_for_best_of_n(settings))
    return pick_best(runtime, judged_prompt, candidates)
