"""On-policy pairs for DPO: the policy answers the training prompts that must decline (harmful requests) or must
not (harmless look-alikes), and each greedy answer of the wrong kind becomes the rejected side against the
project's written answer. Written rejections show what a bad answer looks like in general; these show the policy
the mistakes it actually makes, which are what its greedy answers follow.
"""

from __future__ import annotations

from pathlib import Path

from playground.prompting.formats import END_OF_TURN
from playground.prompting.refusals import is_refusal
from playground.training.data import Pair
from playground.training.seed import Probe, refusal_probes

# Which training prompts the policy answers (`--own-answers WHICH`). Pairs against its own answers to look-alikes
# are what hold over-refusal down while the others push it to refuse (adapters/BUILDS.md).
PROBE_SETS = {
    "all": lambda probe: True,
    "harmful": lambda probe: probe.harmful,
    "harmful-ja": lambda probe: probe.harmful and probe.lang == "ja",
}

ROWS = 12  # prompts per batched generate call
MAX_NEW_TOKENS = 64  # a refusal says so in its first 160 characters (REFUSAL_WINDOW), well within 64 tokens


def probes_to_ask(which: str) -> list[Probe]:
    """The training harmful requests and look-alikes that `--own-answers WHICH` asks the policy."""
    keep = PROBE_SETS[which]
    return [probe for probe in refusal_probes() if keep(probe)]


def own_answer_pairs(runtime, adapter: str | None, probes: list[Probe]) -> list[Pair]:
    """A pair for each probe the variant (`adapter` loaded in `runtime`, None for the bare base) answers wrongly:
    complying with a harmful request, or declining a harmless one. Its greedy answer, as the app would show it
    and closed by <end_of_turn> when it ended its turn, is the rejected side."""
    from playground.models.generation import SamplingSettings, generate_all

    settings = SamplingSettings(max_new_tokens=MAX_NEW_TOKENS)
    pairs = []
    for start in range(0, len(probes), ROWS):
        chunk = probes[start:start + ROWS]
        for probe, column in zip(chunk, generate_all(runtime, [p.prompt for p in chunk], [adapter] * len(chunk),
                                                     settings)):
            answer = column.text.strip()
            if answer and is_refusal(answer) != probe.harmful:
                closed = column.finish in ("eos", "stop")
                pairs.append(Pair(probe.prompt, probe.written, answer + (END_OF_TURN if closed else "")))
    return pairs


def starting_policy_pairs(source: str, dtype: str, cache_dir: Path, parent: Path | None,
                          probes: list[Probe]) -> list[Pair]:
    """own_answer_pairs of the policy a run starts from (`parent`, or the bare base), loaded as the app loads it."""
    from playground.config import Lineup, Variant
    from playground.models.runtime import Runtime

    policy = Variant("policy", parent, "chat") if parent else Variant("base")
    lineup = Lineup(source=source, dtype=dtype, variants=(policy,))
    runtime = Runtime.from_lineup(lineup, cache_dir, log=lambda message: None)
    return own_answer_pairs(runtime, "policy" if parent else None, probes)
