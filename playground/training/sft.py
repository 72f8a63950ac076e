"""SFT (TRL SFTTrainer) with LoRA on ideal answers and upvoted answers; loss on the answers only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from playground.training.common import Method, Progress, TrainSettings, run_training, sequence_logp
from playground.training.data import Example


@dataclass(frozen=True)
class SFTSettings(TrainSettings):
    steps: int = 40  # optimizer steps
    batch_size: int = 8  # examples per step
    learning_rate: float = 2e-4  # LoRA wants ~10x the full-model rate (TRL's SFT default is 2e-5)


def held_out_loss(peft_model, tokenizer, examples: list[Example], adapter: str | None) -> float | None:
    """Mean negative log-likelihood per answer token on the held-out examples, with `adapter` (None: the base);
    lower is better."""
    if not examples:
        return None
    peft_model.eval()
    total, tokens = 0.0, 0
    for example in examples:
        if adapter is None:
            with peft_model.disable_adapter():
                total -= sequence_logp(peft_model, tokenizer, example.prompt, example.completion)
        else:
            peft_model.set_adapter(adapter)
            total -= sequence_logp(peft_model, tokenizer, example.prompt, example.completion)
        tokens += len(tokenizer(example.completion, add_special_tokens=False)["input_ids"])
    return round(total / max(tokens, 1), 4)


SFT = Method("sft", "held_out_loss", held_out_loss, False, "examples", ("loss",))


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
    from trl import SFTConfig, SFTTrainer

    extra = dict(max_length=settings.max_length, completion_only_loss=True)
    return run_training(SFT, SFTConfig, SFTTrainer, extra, source, dtype, cache_dir, train, test, adapters_root,
                        name, parent, settings, progress)
