"""DPO (TRL DPOTrainer) with LoRA on feedback pairs; publishes a new adapter version with its card.

Continuing from a parent adapter (the SFT one), TRL copies it into a frozen "ref" adapter: the reference policy
is the parent, with no second copy of the model. Without a parent, a fresh LoRA is trained and the reference is
the base with adapters disabled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path


from playground.training.common import (
    Progress,
    common_args,
    reporter,
    final_loss,
    save_and_publish,
    sequence_logp,
    trainable_model,
)
from playground.training.data import Pair
from playground.training.publish import discard, staging_folder


@dataclass(frozen=True)
class DPOSettings:
    steps: int = 40  # optimizer steps; a few minutes on 2 CPU cores
    batch_size: int = 4  # pairs per step
    learning_rate: float = 5e-5  # LoRA wants ~10x the full-model rate (TRL's "LoRA Without Regret"); DPO's is 1e-6
    beta: float = 0.1  # how far the policy may move from the reference
    rank: int = 16  # LoRA rank, for a fresh adapter
    max_length: int = 512  # tokens of prompt + answer
    precompute_ref: bool = False  # compute the reference log-probs once, before training
    seed: int = 0


def preference_accuracy(peft_model, tokenizer, pairs: list[Pair], adapter: str | None) -> float | None:
    """Share of pairs whose implicit reward (log-ratio of the adapter against the base) prefers the chosen answer;
    a tie counts half. None without pairs."""
    if not pairs:
        return None
    wins = 0.0
    peft_model.eval()
    for pair in pairs:
        margins = []
        for answer in (pair.chosen, pair.rejected):
            if adapter is None:
                margins.append(0.0)
                continue
            peft_model.set_adapter(adapter)
            policy = sequence_logp(peft_model, tokenizer, pair.prompt, answer)
            with peft_model.disable_adapter():
                base = sequence_logp(peft_model, tokenizer, pair.prompt, answer)
            margins.append(policy - base)
        wins += 1.0 if margins[0] > margins[1] else 0.5 if margins[0] == margins[1] else 0.0
    return round(wins / len(pairs), 4)


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
    from datasets import Dataset
    from transformers import set_seed
    from trl import DPOConfig, DPOTrainer

    set_seed(settings.seed)
    base, model = trainable_model(source, dtype, cache_dir, parent, settings.rank, progress)
    before = preference_accuracy(model, base.tokenizer, test, "default" if parent else None)
    progress({"message": f"held-out preference accuracy before: {before}"})
    staged = staging_folder(adapters_root, name)
    try:
        args = DPOConfig(
            **common_args(staged, settings.steps, settings.batch_size, settings.learning_rate, settings.seed, dtype),
            beta=settings.beta,
            max_length=settings.max_length,
            precompute_ref_log_probs=settings.precompute_ref,
        )
        dataset = Dataset.from_list([asdict(p) for p in train])
        keep = ("loss", "rewards/margins", "rewards/accuracies")
        trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=base.tokenizer,
                             callbacks=[reporter(progress, settings.steps, keep)])
        trainer.train()
        model = trainer.model
        after = preference_accuracy(model, base.tokenizer, test, "default")
        progress({"message": f"held-out preference accuracy after: {after}"})
        card = {
            "kind": "dpo",
            "base_model": base.model_id,
            "base_file": base.origin,
            "parent": str(parent) if parent else None,
            "data_hash": hashlib.sha256(json.dumps([asdict(p) for p in train]).encode()).hexdigest(),
            "pairs": {"train": len(train), "held_out": len(test)},
            "hyperparameters": asdict(settings),
            "metrics": {
                "held_out_preference_accuracy_before": before,
                "held_out_preference_accuracy_after": after,
                "final_loss": final_loss(trainer),
            },
            # A version that got worse on held-out pairs is published, but flagged, never promoted silently.
            "worse_than_before": before is not None and after is not None and after < before,
        }
        return save_and_publish(model, staged, adapters_root, name, card)
    except BaseException:
        discard(staged)
        raise


