"""KTO (TRL KTOTrainer) with LoRA on thumbs up and down: no pairs needed, for when votes form few of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from playground.training.common import Method, Progress, TrainSettings, implicit_reward, run_training
from playground.training.data import Rated


@dataclass(frozen=True)
class KTOSettings(TrainSettings):
    steps: int = 40  # optimizer steps
    batch_size: int = 8  # rated answers per step (KTO estimates its reference point from the batch)
    learning_rate: float = 5e-5  # LoRA wants ~10x the full-model rate
    beta: float = 0.1  # how far the policy may move from the reference


def rating_accuracy(peft_model, tokenizer, rated: list[Rated], adapter: str | None) -> float | None:
    """Share of held-out answers whose implicit reward (adapter against base) has the sign of their thumb;
    zero counts half. None without answers."""
    if not rated:
        return None
    score = 0.0
    peft_model.eval()
    for item in rated:
        reward = implicit_reward(peft_model, tokenizer, item.prompt, item.completion, adapter)
        score += 0.5 if reward == 0 else float((reward > 0) == item.label)
    return round(score / len(rated), 4)


KTO = Method("kto", "held_out_rating_accuracy", rating_accuracy, True, "rated", ("loss", "rewards/margins", "kl"))


def train_kto(
    source: str,
    dtype: str,
    cache_dir: Path,
    train: list[Rated],
    test: list[Rated],
    adapters_root: Path,
    name: str,
    parent: Path | None = None,
    settings: KTOSettings = KTOSettings(),
    progress: Progress = lambda update: None,
) -> Path:
    """Train, measure held-out rating accuracy before and after, and publish adapters_root/name/vN."""
    from trl import KTOConfig, KTOTrainer

    extra = dict(beta=settings.beta, max_length=settings.max_length)
    return run_training(KTO, KTOConfig, KTOTrainer, extra, source, dtype, cache_dir, train, test, adapters_root,
                        name, parent, settings, progress)
