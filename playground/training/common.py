"""What every trainer shares: the base with a trainable LoRA (continued or fresh), progress reports, publishing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from playground.errors import PlaygroundError
from playground.models.decision_gate import DECISION_FILE
from playground.models.sources import LoadedBase, load_base
from playground.training.fused_head import score_labelled_positions_only
from playground.training.publish import discard, publish, staging_folder

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class TrainSettings:
    """What every kind of run takes; each method sets its own defaults and adds its own fields."""

    steps: int = 40  # optimizer steps
    batch_size: int = 4  # examples (or pairs) per step
    learning_rate: float = 5e-5
    rank: int = 16  # LoRA rank, for a fresh adapter
    max_length: int = 512  # tokens of prompt + answer
    quantize_4bit: bool = False  # QLoRA: the frozen base in 4-bit NF4 (bitsandbytes); the LoRA trains in dtype
    seed: int = 0


def training_dtype(dtype: str, cuda: bool | None = None, native_bf16: bool | None = None) -> str:
    """The dtype to train in (`cuda` and `native_bf16` default to this machine's). A CPU without native bfloat16
    (AVX512-BF16 or AMX) runs bf16 backward passes through a slow fallback (on a 2-core AVX2 machine, one frozen
    640x2048 layer's backward for 512 tokens took 1 s in bf16 against 20 ms in float32), so there, as for float16
    on any CPU, the run trains in float32."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    native_bf16 = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    if cuda or dtype == "float32" or (dtype == "bfloat16" and native_bf16):
        return dtype
    return "float32"


def cpu_has_native_bf16() -> bool:
    # torch.cpu's own feature probes (private, hence the guard); no answer counts as no native bf16
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def trainable_model(source: str, dtype: str, cache_dir: Path, parent: Path | None, settings: TrainSettings,
                    progress: Progress):
    """(base, PeftModel with a trainable "default" adapter): the parent's weights, or a fresh LoRA."""
    from peft import LoraConfig, PeftModel, get_peft_model

    base = load_training_base(source, dtype, cache_dir, progress, settings.quantize_4bit)
    if parent is not None:
        return base, PeftModel.from_pretrained(base.model, str(parent), is_trainable=True)
    rank = settings.rank
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", task_type="CAUSAL_LM")
    return base, get_peft_model(base.model, config)


def check_continuable(parent: Path | None) -> None:
    """A LoRA run can't continue a decision (it writes outside the LoRA, and reads what the LoRA computes)."""
    if parent is not None and (parent / DECISION_FILE).is_file():
        raise PlaygroundError(f"{parent} carries a refuse-or-answer decision ({DECISION_FILE}), which LoRA training "
                              "can't continue; train from the adapter it was trained on (its card's parent), then "
                              "run `train decision` again")


def load_training_base(source: str, dtype: str, cache_dir: Path, progress: Progress, quantize_4bit: bool = False,
                       **load_kwargs) -> LoadedBase:
    """The base to put a LoRA on (`load_kwargs` as load_base takes them); a 4-bit one prepared for QLoRA."""
    from peft import prepare_model_for_kbit_training

    base = load_base(source, dtype, "auto", cache_dir, log=lambda message: progress({"message": message}),
                     quantize_4bit=quantize_4bit, **load_kwargs)
    if quantize_4bit:
        prepare_model_for_kbit_training(base.model, use_gradient_checkpointing=False)  # in place
    return base


def sequence_logp(model, tokenizer, prompt: str, completion: str) -> float:
    """log p(completion | prompt), summed over the completion's tokens."""
    with torch.no_grad():
        return float(completion_logps(model, tokenizer, prompt, completion).sum())


def completion_logps(model, tokenizer, prompt: str, completion: str) -> torch.Tensor:
    """log p of each of the completion's tokens given the prompt and the tokens before it (empty for an empty
    completion); with gradients where they are on."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if not completion_ids:
        return torch.zeros(0)
    full = torch.tensor([prompt_ids + completion_ids], device=next(model.parameters()).device)  # (1, T)
    # Only the positions that predict the completion go through the 262k-word output layer: position t predicts
    # token t+1, so the last len(completion) + 1 positions, less the very last.
    logits = model(input_ids=full, logits_to_keep=len(completion_ids) + 1).logits[0, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(1, full[0, -len(completion_ids):, None])[:, 0]


def implicit_reward(peft_model, tokenizer, prompt: str, completion: str, adapter: str | None) -> float:
    """DPO's implicit reward, without beta: log p(completion) with `adapter` minus with the bare base (0 for None)."""
    if adapter is None:
        return 0.0
    peft_model.set_adapter(adapter)
    policy = sequence_logp(peft_model, tokenizer, prompt, completion)
    with peft_model.disable_adapter():
        return policy - sequence_logp(peft_model, tokenizer, prompt, completion)


def pairwise_accuracy(pairs: list, score: Callable[[str, str], float]) -> float | None:
    """Share of pairs whose chosen answer scores above the rejected one (`score(prompt, answer)`); a tie counts
    half. None without pairs."""
    if not pairs:
        return None
    wins = 0.0
    for pair in pairs:
        chosen, rejected = score(pair.prompt, pair.chosen), score(pair.prompt, pair.rejected)
        wins += 1.0 if chosen > rejected else 0.5 if chosen == rejected else 0.0
    return round(wins / len(pairs), 4)


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
        # TRL turns checkpointing on by default: it recomputes each layer's forward during backward. A 270M model's
        # activations for short chats are small, so keeping them is the faster trade here.
        gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(),
        bf16=dtype == "bfloat16" and torch.cuda.is_available(),
    )


def final_loss(trainer) -> float | None:
    return next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None)


def save_and_publish(model, staged: Path, adapters_root: Path, name: str, card: dict, dtype: str) -> Path:
    """Only the trained adapter is saved (not the base, not a "ref" copy), in the base's dtype (PEFT trains LoRA
    in float32: twice the file for no difference in the answers), then renamed into place as vN."""
    discard(staged / "trainer")
    for param_name, param in model.named_parameters():
        if ".default." in param_name and param.dtype != getattr(torch, dtype):
            param.data = param.data.to(getattr(torch, dtype))
    model.save_pretrained(str(staged), selected_adapters=["default"])
    return publish(staged, adapters_root, name, card)


@dataclass(frozen=True)
class Method:
    """How one kind of training differs from the others."""

    kind: str  # "dpo", "kto", "sft": the card's kind
    metric: str  # the card's held-out metric, e.g. "held_out_loss"
    measure: Callable  # (model, tokenizer, held-out examples, adapter or None for the base) -> value or None
    higher_is_better: bool
    count_key: str  # the card's key for the example counts ("pairs", "rated", "examples")
    keep: tuple[str, ...]  # logged values reported with each step
    build: Callable = trainable_model  # (source, dtype, cache_dir, parent, settings, progress) -> (base, PeftModel)


def run_training(method: Method, config_class, trainer_class, config_extra: dict, source: str, dtype: str,
                 cache_dir: Path, train: list, test: list, adapters_root: Path, name: str, parent: Path | None,
                 settings: TrainSettings, progress: Progress, own_examples: Callable | None = None) -> Path:
    """Train a LoRA (continued from `parent`, or fresh), measure the held-out metric before and after, and
    publish adapters_root/name/vN with its card; an interrupted run leaves no version. `own_examples()`, when
    given, adds training examples made from the starting policy's own answers."""
    from datasets import Dataset
    from transformers import set_seed

    if method.build is trainable_model:
        check_continuable(parent)
    set_seed(settings.seed)
    counts = {"train": len(train), "held_out": len(test)}
    if own_examples is not None:  # before the trainable model is built: one copy of the base at a time
        own = own_examples()
        progress({"message": f"{len(own)} more training examples from the starting policy's own answers"})
        train, counts["own_answers"] = train + own, len(own)
    compute = training_dtype(dtype)
    if compute != dtype:
        progress({"message": f"this CPU has no native {dtype}: training in {compute}, many times faster here; "
                             f"the adapter is saved in {dtype}"})
    score_labelled_positions_only()
    base, model = method.build(source, compute, cache_dir, parent, settings, progress)
    title = method.metric.replace("_", " ")
    before = method.measure(model, base.tokenizer, test, "default" if parent else None)
    progress({"message": f"{title} before: {before}"})
    staged = staging_folder(adapters_root, name)
    try:
        args = config_class(
            **common_args(staged, settings.steps, settings.batch_size, settings.learning_rate, settings.seed, compute),
            **config_extra,
        )
        dataset = Dataset.from_list([asdict(example) for example in train])
        trainer = trainer_class(model=model, args=args, train_dataset=dataset, processing_class=base.tokenizer,
                                callbacks=[reporter(progress, settings.steps, method.keep)])
        trainer.train()
        model = trainer.model
        after = method.measure(model, base.tokenizer, test, "default")
        progress({"message": f"{title} after: {after}"})
        worse = before is not None and after is not None and (
            after < before if method.higher_is_better else after > before
        )
        card = {
            "kind": method.kind,
            "base_model": base.model_id,
            "base_file": base.origin,
            "parent": str(parent) if parent else None,
            "data_hash": hashlib.sha256(json.dumps([asdict(e) for e in train]).encode()).hexdigest(),
            method.count_key: counts,
            "hyperparameters": asdict(settings),
            "compute_dtype": compute,
            "metrics": {f"{method.metric}_before": before, f"{method.metric}_after": after,
                        "final_loss": final_loss(trainer)},
            # A version that got worse on held-out data is published, but flagged, never promoted silently.
            "worse_than_before": worse,
        }
        return save_and_publish(model, staged, adapters_root, name, card, dtype)
    except BaseException:
        discard(staged)
        raise
