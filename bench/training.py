"""Training benchmark: DPO with LoRA on 64 pairs of typical chat length, as a Retrain press runs it.
Run as `python -m playground bench training --json`; prints one JSON object. Target: under 5 minutes on 2 cores.
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

PAIRS = 64
BATCH = 4


def chat_pairs(count: int) -> list:
    """Prompts and answers of chat length from the shipped banks: the reference summary against a wrong one."""
    from playground.prompting.banks import load_banks
    from playground.prompting.formats import render_gemma_chat
    from playground.training.data import END_OF_TURN, Pair

    items = [i for bank in load_banks().values() if bank.scoring == "overlap" for i in bank.items]
    pairs = []
    for index in range(count):
        item, other = items[index % len(items)], items[(index + 7) % len(items)]
        prompt = render_gemma_chat([{"role": "user", "content": item.input}])
        pairs.append(Pair(prompt, item.answer + END_OF_TURN, other.answer + END_OF_TURN))
    return pairs


def run(settings, pairs, precompute: bool, log) -> float:
    from playground.training.dpo import DPOSettings, train_dpo

    lineup = settings.lineup
    steps = len(pairs) // BATCH  # one pass over the pairs
    # The trainer prints its logs; the benchmark's stdout carries only its JSON.
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(sys.stderr):
        started = time.perf_counter()
        train_dpo(lineup.source, lineup.dtype, settings.cache_dir, pairs, [], Path(scratch), "bench",
                  settings=DPOSettings(steps=steps, batch_size=BATCH, precompute_ref=precompute),
                  progress=lambda update: log(str(update)) if "step" in update else None)
        return time.perf_counter() - started


def main(settings, tokens: int = 64, log=print) -> int:
    from playground.models import model_thread
    from playground.training.common import training_dtype

    pairs = chat_pairs(PAIRS)
    plain = model_thread.call(run, settings, pairs, False, log)
    precomputed = model_thread.call(run, settings, pairs, True, log)
    result = {
        "pairs": PAIRS,
        "batch_size": BATCH,
        "dtype": settings.lineup.dtype,
        "compute_dtype": training_dtype(settings.lineup.dtype),
        "dpo_run_s": round(plain, 1),  # load, train one pass, save: what a Retrain press costs
        "dpo_pairs_per_s": round(PAIRS / plain, 3),
        "dpo_run_s_precomputed_ref": round(precomputed, 1),
        "dpo_pairs_per_s_precomputed_ref": round(PAIRS / precomputed, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "target_s": 300,
        "notes": [
            "Fresh rank-16 LoRA on every linear layer; the reference is the base with the adapter disabled.",
            "Pairs: the shipped banks' summaries and rewrites (reference answer over another item's), chat format.",
            "Times include loading the cached base and saving the adapter, not the held-out evaluation.",
        ],
    }
    print(json.dumps(result))
    return 0
