"""DPO (TRL DPOTrainer) with LoRA on feedback pairs; publishes a new adapter version with its card.

Continuing from a parent adapter (the SFT one), TRL copies it into a frozen "ref" adapter: the reference policy
is the parent, with no second copy of the model. Without a parent, a fresh LoRA is trained and the reference is
the base with adapters disabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from playground.training.common import (
    Method, Progress, TrainSettings, implicit_reward, pairwise_accuracy, run_training,
)
from playground.training.data import Pair


@dataclass(frozen=True)
class DPOSettings(TrainSettings):
    steps: int = 40  # optimizer steps; a few minutes on 2 CPU cores
    batch_size: int = 4  # pairs per step
    learning_rate: float = 5e-5  # LoRA wants ~10x the full-model rate (TRL's "LoRA Without Regret"); DPO's is 1e-6
    beta: float = 0.1  # how far the policy may move from the reference
    precompute_ref: bool = False  # compute the reference log-probs once, before training
    # Weight of a language-model loss on the chosen answers, added to DPO's (RPO, Pang et al. 2024): DPO alone moves
    # likelihood ratios, and a small model's greedy answers may not follow; this keeps it writing the chosen kind.
    sft_weight: float = 0.0
    # On-policy pairs (own_answers.py): before training, the starting policy answers the project's training harmful
    # requests and look-alikes (or those of own_answers.PROBE_SETS[own_answers]), and each answer of the wrong kind
    # is paired, as rejected, with the written one. "" for none.
    own_answers: str = ""


def preference_accuracy(peft_model, tokenizer, pairs: list[Pair], adapter: str | None) -> float | None:
    """Share of pairs whose implicit reward (log-ratio of the adapter against the base) prefers the chosen answer;
    a tie counts half. None without pairs."""
    peft_model.eval()
    return pairwise_accuracy(
        pairs, lambda prompt, answer: implicit_reward(peft_model, tokenizer, prompt, answer, adapter)
    )


DPO = Method("dpo", "held_out_preference_accuracy", preference_accuracy, True, "pairs",
             ("loss", "rewards/margins", "rewards/accuracies"))


def train_dpo(
    source: str,
    dtype: str,
    cache_dir: Path,
    train: list[Pair],
    test: list[Pair],
    adapters_root: Path,
    name: str,
    parent: Path | None = None,
    settings: DPOSettings = DPOSettings(),
    progress: Progress = lambda update: None,
) -> Path:
    """Train, evaluate on the held-out pairs before and after, and publish adapters_root/name/vN."""
    from trl import DPOConfig, DPOTrainer

    extra = dict(beta=settings.beta, max_length=settings.max_length,
                 precompute_ref_log_probs=settings.precompute_ref)
    if settings.sft_weight:
        extra.update(loss_type=["sigmoid", "sft"], loss_weights=[1.0, settings.sft_weight])
    own = None
    if settings.own_answers:
        from playground.training.own_answers import starting_policy_pairs

        own = lambda: starting_policy_pairs(source, dtype, cache_dir, parent, settings.own_answers)  # noqa: E731
    return run_training(DPO, DPOConfig, DPOTrainer, extra, source, dtype, cache_dir, train, test, adapters_root,
                        name, parent, settings, progress, own)
