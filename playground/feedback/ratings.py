"""Ratings from blind comparisons only: Bradley-Terry strengths on an Elo-like scale, with bootstrap intervals,
a win-rate matrix, and thumbs-up rates.

Bradley-Terry: P(a beats b) = p_a / (p_a + p_b), fitted by Hunter's MM iteration (2004); a tie is half a win
each. Every variant also plays one virtual tie against a fixed anchor, so a variant that never won still gets a
finite rating. Only blind comparisons count: a vote cast knowing the names measures the names.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from playground.feedback.store import FeedbackStore

ANCHOR = "__anchor__"
SCORES = {"left": 1.0, "right": 0.0, "tie": 0.5}  # the left answer's score; both_bad says nothing about order


@dataclass
class Rating:
    variant: str
    rating: float  # 1000 + 400 log10(strength / mean strength): 400 points = 10:1 odds
    low: float  # 95% bootstrap interval
    high: float
    games: int


@dataclass
class Leaderboard:
    ratings: list[Rating]
    win_rates: dict[str, dict[str, float | None]]  # row's score share against column, None: never met
    thumbs: dict[str, dict[str, float]]  # variant -> up, down, rate
    comparisons: int  # blind comparisons that counted
    not_blind: int  # comparisons left out because names were shown

    def as_dict(self) -> dict:
        return {
            "ratings": [r.__dict__ for r in self.ratings],
            "win_rates": self.win_rates,
            "thumbs": self.thumbs,
            "comparisons": self.comparisons,
            "not_blind": self.not_blind,
        }


def variant_label(generation: dict) -> str:
    """The variant, with its adapter version where the name does not already carry it."""
    name, version = generation["variant"], generation.get("adapter_version")
    return name if version is None or name.endswith(f"v{version}") else f"{name} v{version}"


def fit(games: list[tuple[str, str, float]], iterations: int = 200) -> dict[str, float]:
    """Bradley-Terry strengths from (a, b, a's score) games, by Hunter's MM updates."""
    players = sorted({a for a, _, _ in games} | {b for _, b, _ in games})
    games = games + [(p, ANCHOR, 0.5) for p in players]
    wins, met = Counter(), Counter()
    for a, b, score in games:
        wins[a] += score
        wins[b] += 1 - score
        met[a, b] += 1
        met[b, a] += 1
    opponents = defaultdict(set)
    for a, b in met:
        opponents[a].add(b)
    strength = {p: 1.0 for p in [*players, ANCHOR]}
    for _ in range(iterations):
        new = {}
        for p in players:
            denominator = sum(met[p, q] / (strength[p] + strength[q]) for q in opponents[p])
            new[p] = wins[p] / denominator
        new[ANCHOR] = 1.0
        if max(abs(new[p] - strength[p]) for p in players) < 1e-9:
            strength = new
            break
        strength = new
    del strength[ANCHOR]
    return strength


def to_elo(strength: dict[str, float]) -> dict[str, float]:
    mean_log = sum(math.log10(s) for s in strength.values()) / len(strength)
    return {p: 1000 + 400 * (math.log10(s) - mean_log) for p, s in strength.items()}


def leaderboard(store: FeedbackStore, rounds: int = 100, seed: int = 0) -> Leaderboard:
    generations = {g["id"]: g for g in store.query("SELECT id, variant, adapter_version FROM generations")}
    games, not_blind = [], 0
    for c in store.query("SELECT * FROM comparisons ORDER BY id"):
        if not c["blind"]:
            not_blind += 1
            continue
        if c["outcome"] in SCORES:
            left, right = variant_label(generations[c["left_id"]]), variant_label(generations[c["right_id"]])
            if left != right:
                games.append((left, right, SCORES[c["outcome"]]))

    ratings = []
    if games:
        point = to_elo(fit(games))
        rng = random.Random(seed)
        samples = defaultdict(list)
        for _ in range(rounds):
            resampled = [rng.choice(games) for _ in games]
            for player, value in to_elo(fit(resampled)).items():
                samples[player].append(value)
        count = Counter(p for a, b, _ in games for p in (a, b))
        for player, value in point.items():
            ordered = sorted(samples[player]) or [value]
            low = ordered[int(0.025 * (len(ordered) - 1))]
            high = ordered[math.ceil(0.975 * (len(ordered) - 1))]
            ratings.append(Rating(player, round(value, 1), round(low, 1), round(high, 1), count[player]))
        ratings.sort(key=lambda r: -r.rating)

    return Leaderboard(ratings, _win_rates(games), _thumbs(store, generations), len(games), not_blind)


def _win_rates(games: list[tuple[str, str, float]]) -> dict[str, dict[str, float | None]]:
    players = sorted({a for a, _, _ in games} | {b for _, b, _ in games})
    score, met = Counter(), Counter()
    for a, b, s in games:
        score[a, b] += s
        score[b, a] += 1 - s
        met[a, b] += 1
        met[b, a] += 1
    return {
        a: {b: (round(score[a, b] / met[a, b], 3) if met[a, b] else None) for b in players if b != a}
        for a in players
    }


def _thumbs(store: FeedbackStore, generations: dict) -> dict[str, dict[str, float]]:
    counts = defaultdict(Counter)
    for vote in store.current_votes():
        counts[variant_label(generations[vote["generation_id"]])]["up" if vote["value"] > 0 else "down"] += 1
    return {
        variant: {"up": c["up"], "down": c["down"], "rate": round(c["up"] / (c["up"] + c["down"]), 3)}
        for variant, c in sorted(counts.items())
    }
