"""KTO (TRL KTOTrainer) with LoRA on thumbs up and down: no pairs needed, for when votes form few of them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from playground.training.common import (
    Progress,
    common_args,
    final_loss,
    reporter,
    save_and_publish,
    sequence_logp,
    trainable_model,
)
from playground.training.data import Rated
from playground.training.publish import discard, staging_folder


@dataclass(frozen=True)
class KTOSettings:
    steps: int = 40  # optimizer steps
    batch_size: int = 8  # rated answers per step (KTO estimates its reference point from the batch)
    learning_rate: float = 5e-5  # LoRA wants ~10x the full-model rate
    beta: float = 0.1  # how far the policy may move from the reference
    rank: int = 16  # LoRA rank, for a fresh adapter
    max_length: int = 512  # tokens of prompt + answer
    seed: int = 0


def rating_accuracy(peft_model, tokenizer, rated: list[Rated], adapter: str | None) -> float | None:
    """Share of held-out answers whose implicit reward (adapter against base) has the sign of their thumb;
    zero counts half. None without answers."""
    if not rated:
        return None
    score = 0.0
    peft_model.eval()
    for item in rated:
        reward = 0.0
        if adapter is not None:
            peft_model.set_adapter(adapter)
            policy = sequence_logp(peft_model, tokenizer, item.prompt, item.completion)
            with peft_model.disable_adapter():
                reward = policy - sequence_logp(peft_model, tokenizer, item.prompt, item.completion)
        score += 0.5 if reward == 0 else float((reward > 0) == item.label)
    return round(score / len(rated), 4)


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
    from datasets import Dataset
    from transformers import set_seed
    from trl import KTOConfig, KTOTrainer

    set_seed(settings.seed)
    base, model = trainable_model(source, dtype, cache_dir, parent, settings.rank, progress)
    before = rating_accuracy(model, base.tokenizer, test, "default" if parent else None)
    progress({"message": f"held-out rating accuracy before: {before}"})
    staged = staging_folder(adapters_root, name)
    try:
        args = KTOConfig(
            **common_args(staged, settings.steps, settings.batch_size, settings.learning_rate, settings.seed, dtype),
            beta=settings.beta,
            max_length=settings.max_length,
        )
        dataset = Dataset.from_list([asdict(r) for r in train])
        keep = ("loss", "rewards/margins", "kl")
        trainer = KTOTrainer(model=model, args=args, train_dataset=dataset, processing_class=base.tokenizer,
                             callbacks=[reporter(progress, settings.steps, keep)])
        trainer.train()
        model = trainer.model
        after = rating_accuracy(model, base.tokenizer, test, "default")
        progress({"message": f"held-out rating accuracy after: {after}"})
        card = {
            "kind": "kto",
            "base_model": base.model_id,
            "base_file": base.origin,
            "parent": str(parent) if parent else None,
            "data_hash": hashlib.sha256(json.dumps([asdict(r) for r in train]).encode()).hexdigest(),
            "rated": {"train": len(train), "held_out": len(test)},
            "hyperparameters": asdict(settings),
            "metrics": {
                "held_out_rating_accuracy_before": before,
                "held_out_rating_accuracy_after": after,
                "final_loss": final_loss(trainer),
            },
            "worse_than_before": before is not None and after is not None and after < before,
        }
        return save_and_publish(model, staged, adapters_root, name, card)
    except BaseException:
        discard(staged)
        raise
