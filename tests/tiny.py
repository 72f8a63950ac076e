"""Builds a tiny model of the default's architecture (Gemma 3), a locally trained tokenizer, and LoRA adapters.

Random weights: the tests check plumbing and equivalences, not answers. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]  # ids 0..5, as in Gemma's order
CORPUS = [
    "The capital of France is Paris. The capital of Japan is Tokyo.",
    "Answer the question step by step. Let's think step by step.",
    "Question: What is 12 plus 7? Answer: 19",
    "This movie was wonderful. Sentiment: positive",
    "日本の首都は東京です。フランスの首都はパリです。",
    "ステップごとに考えてみましょう。答え: 19",
    "この映画は素晴らしかった。感情: ポジティブ",
    "大規模言語モデルは文脈内学習ができます。",
    "user model assistant system Hello, how can I help you today?",
]


def build_tokenizer(folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )
    wrapped.save_pretrained(folder)
    return wrapped


def build_model(folder: Path, vocab_size: int, seed: int = 0, hidden_size: int = 32, head_dim: int = 16,
                initializer_range: float = 0.02):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=head_dim,
        max_position_embeddings=2048,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        initializer_range=initializer_range,
    )
    model = Gemma3ForCausalLM(config)
    model.save_pretrained(folder)
    return model


def build_adapter(base_folder: Path, out: Path, seed: int, rank: int = 4, scale: float = 8.0) -> Path:
    """A LoRA adapter on every linear layer with random (non-zero) weights, so it changes the output."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    with torch.no_grad():  # PEFT's non-default init is small; make the adapter's effect plain to see
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(scale)
    peft_model.save_pretrained(str(out))
    return out


def build_all(root: Path) -> dict[str, Path]:
    base = root / "tiny-gemma"
    tokenizer = build_tokenizer(base)
    build_model(base, vocab_size=len(tokenizer))
    adapters = root / "adapters"
    sft = build_adapter(base, adapters / "sft" / "v1", seed=1)
    rlhf = build_adapter(base, adapters / "rlhf" / "v1", seed=2)
    return {"base": base, "adapters": adapters, "sft": sft, "rlhf": rlhf}
