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
from typing import Callable

import torch

from playground.models.sources import load_base
from playground.training.data import Pair
from playground.training.publish import discard, publish, staging_folder

Progress = Callable[[dict], None]


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


def sequence_logp(model, tokenizer, prompt: str, completion: str) -> float:
    """log p(completion | prompt), summed over the completion's tokens."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    full = torch.tensor([prompt_ids + completion_ids], device=next(model.parameters()).device)  # (1, T)
    with torch.no_grad():
        logits = model(input_ids=full).logits[0, :-1].float()  # (T-1, vocab): position t predicts token t+1
    logps = torch.log_softmax(logits, dim=-1).gather(1, full[0, 1:, None])[:, 0]  # (T-1,)
    return float(logps[len(prompt_ids) - 1 :].sum())


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
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import TrainerCallback, set_seed
    from trl import DPOConfig, DPOTrainer

    set_seed(settings.seed)
    base = load_base(source, dtype, "auto", cache_dir, log=lambda message: progress({"message": message}))
    if parent is not None:
        model = PeftModel.from_pretrained(base.model, str(parent), is_trainable=True)
    else:
        config = LoraConfig(r=settings.rank, lora_alpha=2 * settings.rank, target_modules="all-linear",
                            task_type="CAUSAL_LM")
        model = get_peft_model(base.model, config)
    before = preference_accuracy(model, base.tokenizer, test, "default" if parent else None)
    progress({"message": f"held-out preference accuracy before: {before}"})

    class Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:  # the closing summary is not a step
                return
            keep = ("loss", "rewards/margins", "rewards/accuracies")
            progress({"step": state.global_step, "of": settings.steps, **{k: logs[k] for k in keep if k in logs}})

    staged = staging_folder(adapters_root, name)
    try:
        args = DPOConfig(
            output_dir=str(staged / "trainer"),
            max_steps=settings.steps,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            beta=settings.beta,
            max_length=settings.max_length,
            precompute_ref_log_probs=settings.precompute_ref,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            seed=settings.seed,
            use_cpu=not torch.cuda.is_available(),
            bf16=dtype == "bfloat16" and torch.cuda.is_available(),
        )
        dataset = Dataset.from_list([asdict(p) for p in train])
        trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=base.tokenizer,
                             callbacks=[Report()])
        trainer.train()
        model = trainer.model
        after = preference_accuracy(model, base.tokenizer, test, "default")
        progress({"message": f"held-out preference accuracy after: {after}"})
        discard(staged / "trainer")
        model.save_pretrained(str(staged), selected_adapters=["default"])
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
                "final_loss": next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None),
            },
            # A version that got worse on held-out pairs is published, but flagged, never promoted silently.
            "worse_than_before": before is not None and after is not None and after < before,
        }
        return publish(staged, adapters_root, name, card)
    except BaseException:
        discard(staged)
        raise
