"""Reward model (TRL RewardTrainer): the base with LoRA and a one-output head scores an answer; trained on pairs so
that the chosen answer scores higher. The reward-model route to RLHF: the app uses it to show each answer's score
and to decode best-of-n.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from playground.models.reward import REWARD_KIND, scored_text
from playground.training.common import (
    Method, Progress, TrainSettings, load_training_base, pairwise_accuracy, run_training,
)
from playground.training.data import Pair



@dataclass(frozen=True)
class RewardSettings(TrainSettings):
    steps: int = 40  # optimizer steps
    batch_size: int = 4  # pairs per step
    learning_rate: float = 1e-4  # LoRA plus a fresh head: ~10x TRL's full-model default of 1e-5


def reward_model(source: str, dtype: str, cache_dir: Path, parent: Path | None, settings: TrainSettings,
                 progress: Progress):
    """(base, PeftModel for sequence classification): the base's body with a fresh LoRA and a one-output head.

    A parent adapter is not used: its causal-LM head has no place in a classifier, so the reward model starts from
    the base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = load_training_base(source, dtype, cache_dir, progress, settings.quantize_4bit,
                              model_class=AutoModelForSequenceClassification, num_labels=1)
    base.model.config.pad_token_id = base.tokenizer.pad_token_id  # it finds each row's last token by padding
    rank = settings.rank
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", task_type="SEQ_CLS")
    return base, get_peft_model(base.model, config)


def pair_accuracy(peft_model, tokenizer, pairs: list[Pair], adapter: str | None) -> float | None:
    """Share of held-out pairs where the chosen answer scores higher than the rejected one; a tie counts half."""
    peft_model.eval()
    return pairwise_accuracy(pairs, lambda prompt, answer: score(peft_model, tokenizer, prompt, answer))


def score(peft_model, tokenizer, prompt: str, completion: str) -> float:
    ids = tokenizer(scored_text(prompt, completion, tokenizer.eos_token), return_tensors="pt")
    with torch.no_grad():
        return float(peft_model(**ids.to(next(peft_model.parameters()).device)).logits[0, 0])


REWARD = Method(REWARD_KIND, "held_out_reward_accuracy", pair_accuracy, True, "pairs", ("loss", "accuracy", "margin"),
                reward_model)


def train_reward(
    source: str,
    dtype: str,
    cache_dir: Path,
    train: list[Pair],
    test: list[Pair],
    adapters_root: Path,
    name: str,
    parent: Path | None = None,
    settings: RewardSettings = RewardSettings(),
    progress: Progress = lambda update: None,
) -> Path:
    """Train, measure held-out pair accuracy before (a random head: about 0.5) and after, and publish
    adapters_root/name/vN."""
    from trl import RewardConfig, RewardTrainer

    extra = dict(max_length=settings.max_length)
    return run_training(REWARD, RewardConfig, RewardTrainer, extra, source, dtype, cache_dir, train, test,
                        adapters_root, name, None, settings, progress)
