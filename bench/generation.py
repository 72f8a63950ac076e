"""Generation benchmark: single-stream speed, side-by-side cost, memory, and how close decoding gets to the
memory-bandwidth bound. Run as `python -m playground bench generation --json`; prints one JSON object.

Ratios are measured in one run on one machine, so they compare like with like.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import psutil
import torch

PROMPT = "Write a short story about a robot who learns to paint. Once upon a time,"
REPEATS = 3  # best of three: the machine is shared, the minimum is the honest cost

NOTES = [
    "Decoding one token reads every weight once (the tied 262k-row output layer is 62% of them), so "
    "bandwidth_fraction = weight bytes x tokens/s / measured read bandwidth (a 1 GB sum, best of 10; it varies "
    "between 25 and 30 GB/s from run to run on the 2-core machine).",
    "side_by_side runs base + 2 LoRA adapters as ONE batched generate call (stacked LoRA: two batched matmuls per "
    "layer); sequential runs the three one after another. Adapters are untrained rank-8 LoRA on every linear "
    "layer when the lineup has fewer than two: only their cost matters (then greedy_side_by_side_equals_alone "
    "is null).",
    "Tried, kept: all model work on one model thread (generate() from a second torch thread ran 25% slower: "
    "52 -> 66 ms a token); the output layer gets a freshly laid-out input (its strided prefill input sent a bf16 "
    "linear, with weights not requiring grad as PEFT leaves them, through a batched matmul that copied the 262k x "
    "640 matrix: first token 770 -> 55 ms, and 2.2 s -> 70 ms for 3 rows); stacked LoRA instead of PEFT's "
    "per-adapter loop (side_by_side_ratio 2.2 -> 1.2).",
    "Where a token's ~50 ms goes (bf16, 2 threads, one row): matmuls ~43 ms, of which the output layer ~22 ms "
    "(oneDNN's bf16 kernel for one row reads at ~15 GB/s, half the bandwidth), the 126 layer matmuls ~20 ms "
    "(~10 GB/s: small matrices, per-call overhead); other ops ~6 ms; generate()'s own loop ~3 ms.",
    "Tried, not kept: torch.mv for one-row matmuls (a gemv kernel, 21 GB/s on the output layer; compute-bound on "
    "2 cores): one stream 53.6 -> 46.6 ms a token, but 3 rows gain nothing (mv per row is slower than one "
    "matmul), so side_by_side_ratio rises to 1.38; prepacked oneDNN weights (mkldnn_linear, _linear_pointwise): "
    "no change; a cache-blocked mv over row chunks for 3 rows: 40 ms vs 25 ms for the plain matmul.",
    "Measured earlier on this machine (DESIGN.md): a static KV cache changed nothing; torch.compile took 95 s to "
    "compile and decoded slower; float32 is 2x slower; llama.cpp reaches 74 tokens/s on the Q4_K_M file by "
    "reading 4x fewer bytes, the only way past the bf16 bound.",
]


def measure_bandwidth(megabytes: int = 1024) -> float:
    """Read bandwidth in GB/s: summing a buffer far larger than the caches reads each byte once."""
    buffer = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32)
    best = float("inf")
    for _ in range(10):
        started = time.perf_counter()
        buffer.sum()  # noqa: B018
        best = min(best, time.perf_counter() - started)
    return buffer.numel() * 4 / best / 1e9


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of weights read per decoded token; tied tensors count once."""
    seen, total = set(), 0
    for param in model.parameters():
        if param.data_ptr() not in seen:
            seen.add(param.data_ptr())
            total += param.numel() * param.element_size()
    return total


def rss_mb() -> float:
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def make_adapter(base: torch.nn.Module, out: Path) -> Path:
    """An untrained rank-8 LoRA on every linear layer, saved like any adapter; the base is left as it was.

    PEFT's default initialisation (B = 0): it computes everything a trained adapter does and says what the base says.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(str(out))
    peft_model.unload()
    return out


def timed(runtime, prompts, adapters, settings) -> tuple[float, float, list[list[int]]]:
    """(wall seconds, first-token seconds, each row's tokens) of one generate call, best of REPEATS."""
    from playground.models.generation import stream_side_by_side

    best = (float("inf"), 0.0, [])
    for _ in range(REPEATS):
        started = time.perf_counter()
        first = None
        for columns in stream_side_by_side(runtime, prompts, adapters, settings):
            if first is None:
                first = time.perf_counter() - started
        wall = time.perf_counter() - started
        if wall < best[0]:
            best = (wall, first, [c.tokens for c in columns])
    return best


def main(settings, tokens: int = 64, log=print) -> int:
    from playground.models import model_thread
    from playground.models.generation import SamplingSettings
    from playground.models.runtime import Runtime

    lineup = settings.lineup
    bandwidth = model_thread.call(measure_bandwidth)  # torch work stays on the model thread (model_thread.py)
    log(f"read bandwidth {bandwidth:.1f} GB/s")
    runtime = Runtime.from_lineup(lineup, settings.cache_dir, log, adapters=False)
    sampling = SamplingSettings(max_new_tokens=tokens, min_new_tokens=tokens)
    warm_up = SamplingSettings(max_new_tokens=4)

    timed(runtime, [PROMPT], [None], warm_up)
    rss_one = rss_mb()  # after a generation: safetensors weights are memory-mapped and paged in on first use
    single_wall, first_token, _ = timed(runtime, [PROMPT], [None], sampling)
    single_tps = (tokens - 1) / (single_wall - first_token)
    log(f"single stream: {single_tps:.1f} tokens/s, first token {first_token * 1000:.0f} ms")

    folders = {v.name: v.adapter for v in lineup.variants if v.adapter}
    trained = len(folders) >= 2
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(len(folders), 2):
            out = Path(scratch) / f"untrained{index}"
            folders[f"untrained{index}"] = model_thread.call(make_adapter, runtime.base, out)
        adapters = list(folders)[:2]
        for name in adapters:
            runtime.load_adapter(name, folders[name])
    rss_three = rss_mb()
    columns = [None, *adapters]
    timed(runtime, [PROMPT] * 3, columns, warm_up)
    sbs_wall, _, sbs_tokens = timed(runtime, [PROMPT] * 3, columns, sampling)
    alone = [timed(runtime, [PROMPT], [name], sampling) for name in columns]
    adapter_wall, adapter_first, _ = alone[1]
    log(f"side by side: {sbs_wall:.2f} s; one stream {single_wall:.2f} s")

    bytes_per_token = weight_bytes(runtime.base)
    result = {
        "model": runtime.model_id,
        "dtype": lineup.dtype,
        "device": str(runtime.device),
        "threads": torch.get_num_threads(),
        "tokens": tokens,
        "single_tokens_per_s": round(single_tps, 2),
        "first_token_ms": round(first_token * 1000, 1),
        "adapter_tokens_per_s": round((tokens - 1) / (adapter_wall - adapter_first), 2),
        "side_by_side_ratio": round(sbs_wall / single_wall, 3),
        "sequential_ratio": round(sum(run[0] for run in alone) / single_wall, 3),
        # Only telling with trained adapters; in bfloat16 a row may part from its lone run after a near-tie.
        "greedy_side_by_side_equals_alone": sbs_tokens == [run[2][0] for run in alone] if trained else None,
        "memory_ratio": round(rss_three / rss_one, 3),
        "rss_mb_one_variant": round(rss_one),
        "rss_mb_three_variants": round(rss_three),
        "weight_gb_per_token": round(bytes_per_token / 1e9, 3),
        "bandwidth_gb_s": round(bandwidth, 1),
        "bandwidth_fraction": round(bytes_per_token * single_tps / 1e9 / bandwidth, 3),
        "notes": NOTES,
    }
    print(json.dumps(result, ensure_ascii=False))
    return 0
