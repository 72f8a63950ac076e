"""What every trainer shares: the base with a trainable LoRA (continued or fresh), progress reports, publishing."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from playground.models.sources import LoadedBase, load_base
from playground.training.publish import discard, publish

Progress = Callable[[dict], None]


def trainable_model(source: str, dtype: str, cache_dir: Path, parent: Path | None, rank: int, progress: Progress):
    """(base, PeftModel with a trainable "default" adapter): the parent's weights, or a fresh LoRA."""
    from peft import LoraConfig, PeftModel, get_peft_model

    base: LoadedBase = load_base(source, dtype, "auto", cache_dir, log=lambda message: progress({"message": message}))
    if parent is not None:
        return base, PeftModel.from_pretrained(base.model, str(parent), is_trainable=True)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", task_type="CAUSAL_LM")
    return base, get_peft_model(base.model, config)


def sequence_logp(model, tokenizer, prompt: str, completion: str) -> float:
    """log p(completion | prompt), summed over the completion's tokens."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    full = torch.tensor([prompt_ids + completion_ids], device=next(model.parameters()).device)  # (1, T)
    with torch.no_grad():
        logits = model(input_ids=full).logits[0, :-1].float()  # (T-1, vocab): position t predicts token t+1
    logps = torch.log_softmax(logits, dim=-1).gather(1, full[0, 1:, None])[:, 0]  # (T-1,)
    return float(logps[len(prompt_ids) - 1 :].sum())


def reporter(progress: Progress, steps: int, keep: tuple[str, ...]):
    """A TrainerCallback that reports each logged step (not the closing summary)."""
    from transformers import TrainerCallback

    class Report(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                progress({"step": state.global_step, "of": steps, **{k: logs[k] for k in keep if k in logs}})

    return Report()


def common_args(staged: Path, steps: int, batch_size: int, learning_rate: float, seed: int, dtype: str) -> dict:
    """Trainer settings every run shares: log each step, keep no checkpoints, report nowhere."""
    return dict(
        output_dir=str(staged / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=dtype == "bfloat16" and torch.cuda.is_available(),
    )


def final_loss(trainer) -> float | None:
    return next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None)


def save_and_publish(model, staged: Path, adapters_root: Path, name: str, card: dict) -> Path:
    """Only the trained adapter is saved (not the base, not a "ref" copy), then renamed into place as vN."""
    discard(staged / "trainer")
    model.save_pretrained(str(staged), selected_adapters=["default"])
    return publish(staged, adapters_root, name, card)
