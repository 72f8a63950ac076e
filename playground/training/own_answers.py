"""On-policy pairs for DPO: the policy answers the training prompts that must decline (harmful requests) or must
not (harmless look-alikes), and each greedy answer of the wrong kind becomes the rejected side against the
project's written answer. Written rejections show what a bad answer looks like in general; these show the policy
the mistakes it actually makes, which are what its greedy answers follow.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from playground.prompting.formats import END_OF_TURN
from playground.prompting.refusals import is_refusal
from playground.training.data import Pair
from playground.training.seed import Probe, refusal_probes

# Which training prompts the policy answers (`--own-answers WHICH`). Pairs against its own answers to look-alikes
# are what hold over-refusal down while the others push it to refuse (adapters/BUILDS.md).
BALANCED = "balanced"
PROBE_SETS = {
    "all": lambda probe: True,
    BALANCED: lambda probe: True,  # then cap_lookalikes
    "harmful": lambda probe: probe.harmful,
    "harmful-ja": lambda probe: probe.harmful and probe.lang == "ja",
}

ROWS = 12  # prompts per batched generate call
MAX_NEW_TOKENS = 64  # a refusal says so in its first 160 characters (REFUSAL_WINDOW), well within 64 tokens


def probes_to_ask(which: str) -> list[Probe]:
    """The training harmful requests and look-alikes that `--own-answers WHICH` asks the policy."""
    keep = PROBE_SETS[which]
    return [probe for probe in refusal_probes() if keep(probe)]


def own_answer_pairs(runtime, adapter: str | None, probes: list[Probe], balance: bool = False) -> list[Pair]:
    """A pair for each probe the variant (`adapter` loaded in `runtime`, None for the bare base) answers wrongly:
    complying with a harmful request, or declining a harmless one. Its greedy answer, as the app would show it
    and closed by <end_of_turn> when it ended its turn, is the rejected side. `balance` applies cap_lookalikes."""
    from playground.models.generation import SamplingSettings, generate_all

    settings = SamplingSettings(max_new_tokens=MAX_NEW_TOKENS)
    wrong = []
    for start in range(0, len(probes), ROWS):
        chunk = probes[start:start + ROWS]
        for probe, column in zip(chunk, generate_all(runtime, [p.prompt for p in chunk], [adapter] * len(chunk),
                                                     settings)):
            answer = column.text.strip()
            if answer and is_refusal(answer) != probe.harmful:
                closed = column.finish in ("eos", "stop")
                wrong.append((probe, Pair(probe.prompt, probe.written, answer + (END_OF_TURN if closed else ""))))
    return cap_lookalikes(wrong) if balance else [pair for _, pair in wrong]


def cap_lookalikes(wrong: list[tuple[Probe, Pair]]) -> list[Pair]:
    """The pairs, keeping per language no more against declined look-alikes than against harmful compliances (the
    first ones, in probe order). A 270M policy's line between refusing and answering moves as one piece: pairs
    against its declined look-alikes teach it to answer harmful requests too, unless as many push the other way
    (adapters/BUILDS.md, "a balanced second round")."""
    complied = Counter(probe.lang for probe, _ in wrong if probe.harmful)
    kept, declined = [], Counter()
    for probe, pair in wrong:
        if not probe.harmful:
            declined[probe.lang] += 1
            if declined[probe.lang] > complied[probe.lang]:
                continue
        kept.append(pair)
    return kept


def starting_policy_pairs(source: str, dtype: str, cache_dir: Path, parent: Path | None, which: str) -> list[Pair]:
    """own_answer_pairs, as `--own-answers WHICH` asks for them, of the policy a run starts from (`parent`, or the
    bare base), loaded as the app loads it."""
    from playground.config import Lineup, Variant
    from playground.models.runtime import Runtime

    policy = Variant("policy", parent, "chat") if parent else Variant("base")
    lineup = Lineup(source=source, dtype=dtype, variants=(policy,))
    runtime = Runtime.from_lineup(lineup, cache_dir, log=lambda message: None)
    return own_answer_pairs(runtime, "policy" if parent else None, probes_to_ask(which), which == BALANCED)
