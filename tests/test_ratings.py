"""Bradley-Terry ratings from blind comparisons, with bootstrap intervals, win rates and thumbs-up rates."""

import json
import random

import pytest

from playground.feedback import FeedbackStore
from playground.feedback.ratings import fit, leaderboard

from test_cli import run_cli


def test_fit_recovers_known_strengths():
    rng = random.Random(1)
    true = {"a": 4.0, "b": 2.0, "c": 1.0}
    games = []
    for _ in range(3000):
        x, y = rng.sample(sorted(true), 2)
        games.append((x, y, 1.0 if rng.random() < true[x] / (true[x] + true[y]) else 0.0))
    strength = fit(games)
    assert strength["a"] / strength["b"] == pytest.approx(2.0, rel=0.15)
    assert strength["b"] / strength["c"] == pytest.approx(2.0, rel=0.15)


@pytest.fixture
def arena(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    ids = {v: store.record_generation(variant=v, prompt="p", response=v) for v in ("base", "sft-v1", "rlhf-v1")}
    plan = [("rlhf-v1", "base", "left")] * 18 + [("rlhf-v1", "base", "right")] * 2
    plan += [("sft-v1", "base", "left")] * 14 + [("sft-v1", "base", "right")] * 6
    plan += [("rlhf-v1", "sft-v1", "left")] * 12 + [("rlhf-v1", "sft-v1", "tie")] * 4 + [("rlhf-v1", "sft-v1", "right")] * 4
    plan += [("base", "sft-v1", "both_bad")] * 5
    for left, right, outcome in plan:
        store.record_comparison(ids[left], ids[right], outcome)
    for _ in range(30):  # names shown: these must not move the ratings
        store.record_comparison(ids["base"], ids["rlhf-v1"], "left", blind=False)
    store.record_vote(ids["rlhf-v1"], 1, participant="a")
    store.record_vote(ids["rlhf-v1"], 1, participant="b")
    store.record_vote(ids["rlhf-v1"], -1, participant="c")
    store.record_vote(ids["base"], 1, participant="a")
    store.record_vote(ids["base"], -1, participant="a")  # a changed her mind: counts once, as down
    return store


def test_leaderboard_orders_variants_with_intervals(arena):
    board = leaderboard(arena)
    assert [r.variant for r in board.ratings] == ["rlhf-v1", "sft-v1", "base"]
    assert board.comparisons == 60 and board.not_blind == 30  # both_bad says nothing of order; not counted
    for r in board.ratings:
        assert r.low <= r.rating <= r.high
    top, _, bottom = board.ratings
    assert top.low > bottom.high  # 18 of 20 is a clear difference
    assert board.win_rates["rlhf-v1"]["base"] == 0.9
    assert board.win_rates["base"]["rlhf-v1"] == 0.1
    assert board.win_rates["rlhf-v1"]["sft-v1"] == pytest.approx((12 + 2) / 20)  # ties count half
    assert board.thumbs == {
        "base": {"up": 0, "down": 1, "rate": 0.0},
        "rlhf-v1": {"up": 2, "down": 1, "rate": 0.667},
    }


def test_bootstrap_is_reproducible(arena):
    assert leaderboard(arena).as_dict() == leaderboard(arena).as_dict()


def test_leaderboard_cli(arena):
    result = run_cli("leaderboard", "--db", str(arena.path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [r["variant"] for r in report["ratings"]] == ["rlhf-v1", "sft-v1", "base"]
    text = run_cli("leaderboard", "--db", str(arena.path))
    assert text.returncode == 0
    assert "Ratings from 60 blind comparisons (30 not blind, left out)" in text.stdout
    assert "rlhf-v1" in text.stdout.splitlines()[1]  # first place
    assert "67% (2 up, 1 down)" in text.stdout


def test_empty_database_has_an_empty_board(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    board = leaderboard(store)
    assert board.ratings == [] and board.win_rates == {} and board.thumbs == {}
    assert "no votes yet" in run_cli("leaderboard", "--db", str(store.path)).stdout
