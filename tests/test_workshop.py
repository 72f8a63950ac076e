"""Workshop mode on a real server: a room password to get in, names that stick to votes, admin-only training."""

import pytest
from gradio_client import Client

from conftest import free_port
from playground.errors import ConfigError
from playground.ui.access import Access
from test_app import EMPTY, SETTINGS

ROOM, ADMIN = "sakura-2026", "host-only"


def test_the_network_needs_a_room_password():
    with pytest.raises(ConfigError, match="--host 0.0.0.0 opens the playground to the network: set a room password"):
        Access.for_host("0.0.0.0", None, None)
    assert not Access.for_host("127.0.0.1", None, None).workshop and not Access.for_host("::1", None, None).workshop
    access = Access.for_host("192.168.1.20", ROOM, ADMIN)
    assert access.workshop and access.sign_in("Ana", ROOM) and access.sign_in("Host", ADMIN)
    assert not access.sign_in("Ana", "guess") and not access.sign_in("  ", ROOM) and not access.sign_in("x" * 41, ROOM)


def test_serve_refuses_the_lan_without_a_room_password(tmp_path):
    from test_cli import run_cli

    result = run_cli("serve", "--host", "0.0.0.0", "--db", str(tmp_path / "f.db"), env={"PLAYGROUND_ROOM_PASSWORD": ""})
    assert result.returncode == 2 and "set a room password with --room-password" in result.stderr
    assert not (tmp_path / "f.db").exists()  # refused before anything was opened


@pytest.fixture
def workshop(runtime, tiny_lineup, toy_bank, feedback_store, tmp_path):
    """The app as a workshop serves it: room and admin passwords, training allowed to the admin."""
    from playground.ui.app import build_app, launch_options
    from playground.ui.train import TrainingPlace

    place = TrainingPlace(feedback_store.path, tiny_lineup.source, "float32", tmp_path / "cache", tmp_path / "adapters")
    access = Access(ROOM, ADMIN, workshop=True)
    app = build_app(runtime, tiny_lineup, {"toy": toy_bank}, feedback_store, place, access)
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                       **launch_options(), **access.launch_options())
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_participants_sign_in_and_their_name_goes_with_what_they_do(workshop, feedback_store):
    with pytest.raises(Exception):
        Client(workshop, verbose=False)  # no password: no page, no API
    with pytest.raises(Exception):
        Client(workshop, auth=("Ana", "wrong"), verbose=False)
    ana = Client(workshop, auth=("Ana", ROOM), verbose=False)
    _, *outputs = ana.predict("", "Hello", *SETTINGS, *EMPTY, api_name="/compare")
    ids = outputs[-1]
    ana.predict(ids["base"], 1, "Mallory", api_name="/vote")  # a typed name cannot stand in for the signed-in one
    assert [r["participant"] for r in feedback_store.query("SELECT participant FROM votes")] == ["Ana"]
    sessions = feedback_store.query("SELECT participant FROM sessions")
    assert [s["participant"] for s in sessions] == ["Ana"]
    assert {r["participant"] for r in feedback_store.query("SELECT participant FROM generations")} == {"Ana"}


def test_training_needs_the_admin_password(workshop, feedback_store):
    client = Client(workshop, auth=("Ana", ROOM), verbose=False)
    args = ("dpo", "(fresh LoRA on the base)", "rlhf", 2, 0.001, 0.1, False)
    with pytest.raises(Exception, match="This needs the admin password"):
        client.predict(*args, "guess", api_name="/train")
    with pytest.raises(Exception, match="This needs the admin password"):
        client.predict("", api_name="/cancel_training")
    assert feedback_store.count("training_runs") == 0
    with pytest.raises(Exception, match="preference pairs to train on"):  # past the password: the data check
        client.predict(*args, ADMIN, api_name="/train")


def test_rate_limit_counts_a_sliding_minute_per_participant():
    from playground.ui.limits import RateLimit

    now = [0.0]
    limit = RateLimit(per_minute=3, clock=lambda: now[0])
    for _ in range(3):
        limit.check("ana")
    with pytest.raises(Exception, match=r"at most 3 a minute. Try again in 1 s"):
        now[0] = 59.5
        limit.check("ana")
    limit.check("ben")  # others are not held up
    now[0] = 60.0
    limit.check("ana")  # the first vote has left the window


def test_a_vote_flood_is_refused_and_nothing_over_the_limit_is_stored(server, feedback_store):
    from playground.ui.limits import VOTES_PER_MINUTE

    url, runtime, lineup = server
    client = Client(url, verbose=False)
    _, *outputs = client.predict("", "Hello", *SETTINGS, *EMPTY, api_name="/compare")
    answer = outputs[-1]["base"]
    for _ in range(VOTES_PER_MINUTE):
        client.predict(answer, 1, "bot", api_name="/vote")
    with pytest.raises(Exception, match="Too many votes"):
        client.predict(answer, -1, "bot", api_name="/vote")
    client.predict(answer, -1, "ana", api_name="/vote")  # another participant still can
    votes = feedback_store.query("SELECT participant, value FROM votes")
    assert len(votes) == VOTES_PER_MINUTE + 1 and {"participant": "ana", "value": -1} in votes
    assert all(v["value"] == 1 for v in votes if v["participant"] == "bot")


def test_the_browser_cannot_read_files_the_app_did_not_mean_to_serve(server, feedback_store):
    import urllib.error
    import urllib.request

    from conftest import REPO

    url, _, _ = server
    feedback_store.record_generation(variant="base", prompt="secret", response="secret")
    for path in ("/etc/passwd", str(feedback_store.path), str(REPO / "README.md"), str(REPO / "playground/cli.py")):
        for route in (f"gradio_api/file={path}", f"file={path}", f"gradio_api/file={path.replace('/', '%2F')}"):
            try:
                with urllib.request.urlopen(url + route, timeout=10) as response:
                    body = response.read()
            except urllib.error.HTTPError as error:
                assert error.code in (403, 404), (route, error.code)
                continue
            assert b"root:" not in body and b"secret" not in body and b"argparse" not in body, route


def test_a_small_room_at_once_loses_no_vote():
    """bench/load.py with 8 participants: concurrent clients on the real server, every vote acknowledged is stored."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run([sys.executable, "-m", "playground", "bench", "load", "--json", "--participants", "8",
                             "--prompts", "2"], capture_output=True, text=True, cwd=REPO, timeout=600)
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert report["errors"] == 0 and report["votes_stored"] == report["votes_sent"] == 8 * 2 * 2
    assert report["answers_stored"] == 8 * 2 * (3 + 2) and report["integrity_ok"]


def test_a_full_queue_answers_busy_try_again_and_keeps_what_it_took(runtime, tiny_lineup, toy_bank, feedback_store):
    from playground.ui.app import QUEUE, build_app, launch_options
    from test_app import PROMPTING, SAMPLING

    app = build_app(runtime, tiny_lineup, {"toy": toy_bank}, feedback_store)
    port = free_port()
    app.queue(**{**QUEUE, "max_size": 2}).launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                                 quiet=True, **launch_options())
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        long_answers = (*PROMPTING, 160, *SAMPLING[1:])  # keep the one generation lane busy for a moment
        jobs = [client.submit("", f"question {n}", *long_answers, *EMPTY, api_name="/compare") for n in range(12)]
        outcomes = []
        for job in jobs:
            try:
                job.result(timeout=120)
                outcomes.append("answered")
            except Exception as exc:  # what a participant is told when the room's queue is full
                outcomes.append(str(exc))
        busy = [o for o in outcomes if o != "answered"]
        assert busy and all("try again" in o for o in busy), outcomes
        assert feedback_store.count("generations") == outcomes.count("answered") * 3  # every accepted one is kept
        _, *outputs = client.predict("", "one more", *long_answers, *EMPTY, api_name="/compare")
        assert set(outputs[-1]) == {"base", "sft", "rlhf"}  # the room gets in again once the queue drains
    finally:
        app.close()
