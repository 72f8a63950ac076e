"""Load benchmark: a workshop room of participants on the real app, over real HTTP on loopback, with the tiny test
model (the point is the server, the queue and feedback.db, not the model's speed).

Each participant (their own gradio_client) asks N prompts in Compare, gives a thumb to one answer, plays an arena
round and votes in it. Run as `python -m playground bench load --json [--participants 30 --prompts 10]`; prints one
JSON object. Target: errors 0, votes_stored == votes_sent.
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(scratch: Path):
    """The app as `serve` builds it (queue, one generation lane), on the tiny model; returns (app, url, store)."""
    sys.path.insert(0, str(REPO / "tests"))
    import tiny

    from playground.config import Lineup, Variant
    from playground.feedback import FeedbackStore
    from playground.models.runtime import Runtime
    from playground.ui.app import QUEUE, build_app, launch_options

    paths = tiny.build_all(scratch / "tiny")
    lineup = Lineup(source=str(paths["base"]), dtype="float32", device="cpu",
                    variants=(Variant("base"), Variant("instruct", paths["sft"], "chat"),
                              Variant("rlhf", paths["rlhf"], "chat")))
    runtime = Runtime.from_lineup(lineup, scratch / "cache", log=lambda message: None)
    store = FeedbackStore(scratch / "feedback.db")
    app = build_app(runtime, lineup, {}, store)
    port = free_port()
    app.queue(**QUEUE).launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                              **launch_options())
    return app, f"http://127.0.0.1:{port}/", store, len(lineup.variants)


def participant(url: str, number: int, prompts: int, variants: int, latencies: list, counts: dict, lock, log):
    from gradio_client import Client

    client = Client(url, verbose=False)
    name = f"participant-{number:02d}"
    histories = [[]] * (variants + 3)  # every column slot, the spare ones too
    for turn in range(prompts):
        for action in ("compare", "vote", "arena", "arena_vote"):
            started = time.perf_counter()
            try:
                if action == "compare":
                    # name, prompt, mode, task, k, lang, 6 sampling values, best-of-n, columns, histories
                    result = client.predict(name, f"Question {turn} from {name}?", "zero", "", 3, "en",
                                            16, 0, 0.95, 0, 1.0, 0, 1, ["base", "instruct", "rlhf"], *histories,
                                            api_name="/compare")
                    ids = result[-1]
                elif action == "vote":
                    with lock:
                        counts["votes_sent"] += 1
                    client.predict(ids["instruct"], 1 if turn % 2 else -1, name, api_name="/vote")
                elif action == "arena":
                    round_ids = client.predict(name, f"Arena question {turn}?", 16, 0, 0.95, 0, 1.0, 0,
                                               api_name="/arena")[4]
                else:
                    with lock:
                        counts["votes_sent"] += 1
                    client.predict(round_ids["left_id"], round_ids["right_id"], "left", name, api_name="/arena_vote")
            except Exception as exc:  # counted, and the first few shown
                with lock:
                    counts["errors"] += 1
                    if counts["errors"] <= 3:
                        log(f"{name} {action}: {exc}")
                continue
            finally:
                with lock:
                    counts["requests"] += 1
            latencies.append((action, (time.perf_counter() - started) * 1000))


def main(settings=None, tokens: int = 0, log=print, participants: int = 30, prompts: int = 10) -> int:
    # Gradio prints its own notices; the benchmark's stdout carries only its JSON.
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(sys.stderr):
        app, url, store, variants = start_app(Path(scratch))
        latencies: list = []
        counts = {"requests": 0, "errors": 0, "votes_sent": 0}
        lock = threading.Lock()
        log(f"{participants} participants x {prompts} prompts against {url}")
        started = time.perf_counter()
        try:
            with ThreadPoolExecutor(participants) as pool:
                for number in range(participants):
                    pool.submit(participant, url, number, prompts, variants, latencies, counts, lock, log)
        finally:
            app.close()
        elapsed = time.perf_counter() - started
        votes_stored = store.count("votes") + store.count("comparisons")
        ms = sorted(value for _, value in latencies)
        compare = sorted(value for action, value in latencies if action == "compare")
        report = {
            "participants": participants,
            "prompts_each": prompts,
            **counts,
            "votes_stored": votes_stored,
            "answers_stored": store.count("generations"),
            "p50_ms": round(statistics.median(ms), 1) if ms else None,
            "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1) if ms else None,
            "compare_p95_ms": round(compare[int(0.95 * (len(compare) - 1))], 1) if compare else None,
            "requests_per_s": round(counts["requests"] / elapsed, 1),
            "integrity_ok": store.integrity_ok(),
        }
    print(json.dumps(report))
    return 0 if report["errors"] == 0 and report["votes_stored"] == report["votes_sent"] else 1
