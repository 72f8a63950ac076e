"""SFT (TRL SFTTrainer) with LoRA on ideal answers and upvoted answers; loss on the answers only."""

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
from playground.training.data import Example
from playground.training.publish import discard, staging_folder


@dataclass(frozen=True)
class SFTSettings:
    steps: int = 40  # optimizer steps
    batch_size: int = 8  # examples per step
    learning_rate: float = 2e-4  # LoRA wants ~10x the full-model rate (TRL's SFT default is 2e-5)
    rank: int = 16  # LoRA rank, for a fresh adapter
    max_length: int = 512  # tokens of prompt + answer
    seed: int = 0


def held_out_loss(model, tokenizer, examples: list[Example]) -> float | None:
    """Mean negative log-likelihood per answer token on the held-out examples; lower is better."""
    if not examples:
        return None
    model.eval()
    total, tokens = 0.0, 0
    for example in examples:
        total -= sequence_logp(model, tokenizer, example.prompt, example.completion)
        tokens += len(tokenizer(example.completion, add_special_tokens=False)["input_ids"])
    return round(total / max(tokens, 1), 4)


def train_sft(
    source: str,
    dtype: str,
    cache_dir: Path,
    train: list[Example],
    test: list[Example],
    adapters_root: Path,
    name: str,
    parent: Path | None = None,
    settings: SFTSettings = SFTSettings(),
    progress: Progress = lambda update: None,
) -> Path:
    """Train, measure the held-out loss before and after, and publish adapters_root/name/vN."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    set_seed(settings.seed)
    base, model = trainable_model(source, dtype, cache_dir, parent, settings.rank, progress)
    before = held_out_loss(model, base.tokenizer, test)
    progress({"message": f"held-out loss before: {before}"})
    staged = staging_folder(adapters_root, name)
    try:
        args = SFTConfig(
            **common_args(staged, settings.steps, settings.batch_size, settings.learning_rate, settings.seed, dtype),
            max_length=settings.max_length,
            completion_only_loss=True,
        )
        dataset = Dataset.from_list([asdict(e) for e in train])
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=base.tokenizer,
                             callbacks=[reporter(progress, settings.steps, ("loss",))])
        trainer.train()
        model = trainer.model
        after = held_out_loss(model, base.tokenizer, test)
        progress({"message": f"held-out loss after: {after}"})
        card = {
            "kind": "sft",
            "base_model": base.model_id,
            "base_file": base.origin,
            "parent": str(parent) if parent else None,
            "data_hash": hashlib.sha256(json.dumps([asdict(e) for e in train]).encode()).hexdigest(),
            "examples": {"train": len(train), "held_out": len(test)},
            "hyperparameters": asdict(settings),
            "metrics": {"held_out_loss_before": before, "held_out_loss_after": after, "final_loss": final_loss(trainer)},
            "worse_than_before": before is not None and after is not None and after > before,
        }
        return save_and_publish(model, staged, adapters_root, name, card)
    except BaseException:
        discard(staged)
        raise
