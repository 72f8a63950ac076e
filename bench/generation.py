"""Generation benchmark: single-stream speed, side-by-side cost, memory, and how close decoding gets to the
memory-bandwidth bound. Run as `python -m playground bench generation --json`; prints one JSON object.

Ratios are measured in one run on one machine, so they compare like with like.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import psutil
import torch

PROMPT = "Write a short story about a robot who learns to paint. Once upon a time,"
REPEATS = 3  # best of three: the machine is shared, the minimum is the honest cost

NOTES = [
    "Decoding one token reads every weight once (the tied 262k-row output layer is most of them), so "
    "bandwidth_fraction = weight bytes x tokens/s / measured read bandwidth.",
    "side_by_side runs base + 2 LoRA adapters as ONE batched generate call (PEFT mixed-adapter batch); "
    "sequential runs the three one after another.",
    "The adapters here are untrained (rank 8 on all linear layers) when the lineup has fewer than two: "
    "only their cost matters.",
]


def measure_bandwidth(megabytes: int = 1024) -> float:
    """Read bandwidth in GB/s: summing a buffer far larger than the caches reads each byte once."""
    buffer = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        buffer.sum()
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
    """An untrained rank-8 LoRA on every linear layer, saved like any adapter; the base is left as it was."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(str(out))
    peft_model.unload()
    return out


def timed(runtime, prompts, adapters, settings) -> tuple[float, float, int]:
    """(wall seconds, first-token seconds, steps) for one generate call, best of REPEATS."""
    from playground.models.generation import stream_side_by_side

    best = (float("inf"), 0.0, 0)
    for _ in range(REPEATS):
        started = time.perf_counter()
        first = None
        for columns in stream_side_by_side(runtime, prompts, adapters, settings):
            if first is None:
                first = time.perf_counter() - started
        wall = time.perf_counter() - started
        steps = max(len(c.tokens) for c in columns)
        if wall < best[0]:
            best = (wall, first, steps)
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

    timed(runtime, [PROMPT], [None], SamplingSettings(max_new_tokens=4))  # warm-up: allocator, kernels
    rss_one = rss_mb()  # after a generation: safetensors weights are memory-mapped and paged in on first use
    single_wall, first_token, single_steps = timed(runtime, [PROMPT], [None], sampling)
    decode_s = single_wall - first_token
    single_tps = (single_steps - 1) / decode_s
    log(f"single stream: {single_tps:.1f} tokens/s, first token {first_token * 1000:.0f} ms")

    folders = {v.name: v.adapter for v in lineup.variants if v.adapter}
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(len(folders), 2):
            out = Path(scratch) / f"untrained{index}"
            folders[f"untrained{index}"] = model_thread.call(make_adapter, runtime.base, out)
        adapters = list(folders)[:2]
        for name in adapters:
            runtime.load_adapter(name, folders[name])
    rss_three = rss_mb()
    columns = [None, *adapters]
    timed(runtime, [PROMPT] * 3, columns, SamplingSettings(max_new_tokens=4))  # warm-up of the LoRA path
    sbs_wall, _, sbs_steps = timed(runtime, [PROMPT] * 3, columns, sampling)
    adapter_wall, adapter_first, _ = timed(runtime, [PROMPT], [adapters[0]], sampling)
    sequential_wall = sum(timed(runtime, [PROMPT], [name], sampling)[0] for name in columns)
    log(f"side by side: {sbs_wall:.2f} s for {sbs_steps} steps; single {single_wall:.2f} s")

    bytes_per_token = weight_bytes(runtime.base)
    result = {
        "model": runtime.model_id,
        "dtype": lineup.dtype,
        "device": str(runtime.device),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "tokens": tokens,
        "single_tokens_per_s": round(single_tps, 2),
        "first_token_ms": round(first_token * 1000, 1),
        "adapter_tokens_per_s": round((tokens - 1) / (adapter_wall - adapter_first), 2),
        "side_by_side_ratio": round(sbs_wall / single_wall, 3),
        "sequential_ratio": round(sequential_wall / single_wall, 3),
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
