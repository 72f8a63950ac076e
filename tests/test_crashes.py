"""kill -9 at the worst moments: what was acknowledged is kept, the database is sound, no version is half written."""

import os
import signal
import subprocess
import sys
import threading
import time

from gradio_client import Client

from conftest import REPO, free_port
from playground.feedback import FeedbackStore
from test_app import PROMPTING

SAMPLING = (8, 0, 0.95, 0, 1.0, 0, 1)


def start_server(config, db, port, *extra):
    process = subprocess.Popen([sys.executable, "-m", "playground", "serve", "--config", str(config), "--db", str(db),
                                "--port", str(port), *extra], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:  # up, and the model loaded (the page is served while it loads)
        assert process.poll() is None, process.stderr.read()
        try:
            client = Client(url, verbose=False)
            client.predict("", "ping", *PROMPTING, 1, *SAMPLING[1:], ["base"], *[[]] * 6, api_name="/compare")
            break
        except Exception:
            assert time.time() < deadline, "the server did not come up"
            time.sleep(0.5)
    return process, client


def test_kill_9_during_a_burst_of_votes_keeps_every_acknowledged_vote(tiny_config, tmp_path):
    db = tmp_path / "feedback.db"
    process, client = start_server(tiny_config, db, free_port())
    try:
        _, *outputs = client.predict("", "Hello", *PROMPTING, *SAMPLING, ["base", "sft"], *[[]] * 6,
                                     api_name="/compare")
        ids = outputs[-1]
        acknowledged, lock = [], threading.Lock()

        def voter(number):
            voter_client = Client(client.src, verbose=False)
            for i in range(20):  # within the rate limit, and fast
                try:
                    vote_id = voter_client.predict(ids["base" if i % 2 else "sft"], 1, f"voter-{number}",
                                                   api_name="/vote")
                except Exception:
                    return  # the server is gone
                with lock:
                    acknowledged.append(vote_id)

        threads = [threading.Thread(target=voter, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        while len(acknowledged) < 30:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)  # mid-burst
        for thread in threads:
            thread.join(timeout=60)
    finally:
        process.kill()
        process.wait()
    store = FeedbackStore(db)
    assert store.integrity_ok()
    stored = {row["id"] for row in store.query("SELECT id FROM votes")}
    assert acknowledged and set(acknowledged) <= stored  # every vote the client was told about survived
    assert len(stored) < 6 * 20  # the kill really came mid-burst


def test_kill_9_of_the_app_during_training_leaves_no_version_and_the_run_marked(tiny_config, tiny_paths, tmp_path):
    from playground.training.jobs import Jobs, _process_alive
    from test_training import separable_feedback

    db = tmp_path / "feedback.db"
    separable_feedback(db)
    adapters = tmp_path / "adapters"
    port = free_port()
    process, client = start_server(tiny_config, db, port, "--adapters", str(adapters))
    try:
        args = ("dpo", "sft", "rlhf", 400, 0.001, 0.1, False, "")
        client.predict(*args, api_name="/train")
        store = FeedbackStore(db)
        deadline = time.time() + 240
        while not store.run(1)["metrics"]:  # training for real
            assert time.time() < deadline, store.run(1)["message"]
            time.sleep(0.5)
        child = store.run(1)["pid"]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.time() + 30
        while _process_alive(child):  # the orphaned training process notices and stops
            assert time.time() < deadline, "the training process outlived the app"
            time.sleep(0.5)
    finally:
        process.kill()
        process.wait()
    assert store.integrity_ok()
    assert not list(adapters.glob("rlhf/v*"))  # no version, whole or half
    Jobs(store)  # the next start finds the run that was cut off
    run = store.run(1)
    assert run["status"] == "failed" and "stopped" in run["message"]

