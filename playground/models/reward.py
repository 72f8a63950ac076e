"""A reward model on the running base: its LoRA joins the other adapters on the one copy of the base, and its
one-output head scores an answer from the last hidden state, as the classifier it was trained as does.

`train reward` saves a PEFT sequence-classification adapter: LoRA matrices on the base's body (the same layers a
causal-LM adapter changes) and the head as `score.weight`. The body is shared by both architectures, so the LoRA
loads into the causal LM as an ordinary adapter and the head is kept beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from playground.errors import AdapterError
from playground.models.adapters import WEIGHTS, AdapterInfo, check_adapter

ADAPTER = "__reward__"  # its PEFT adapter name; never a column's name (names may not start with "_")
HEAD_KEY = "base_model.model.score.weight"
REWARD_KIND = "reward"


@dataclass(frozen=True)
class RewardModel:
    folder: Path
    info: AdapterInfo
    head: torch.Tensor  # (1, hidden): the score layer


def scored_text(prompt: str, completion: str, eos_token: str) -> str:
    """What the reward model reads: the prompt, the answer and the end-of-sequence token (RewardTrainer adds it
    in training, so scoring adds it too); its score is the head's output at that last token."""
    return prompt + completion + eos_token


def is_reward_model(folder: Path) -> bool:
    card = Path(folder) / "card.json"
    try:
        return json.loads(card.read_text(encoding="utf-8")).get("kind") == REWARD_KIND
    except (OSError, ValueError, AttributeError):
        return False


def read_reward_model(folder: Path, base_model_id: str, base: torch.nn.Module):
    """(RewardModel, LoraConfig for the causal LM, LoRA weights) from a `train reward` folder, checked first."""
    from peft import LoraConfig
    from safetensors.torch import load_file

    folder = Path(folder)
    info = check_adapter(folder, base_model_id, base)  # safetensors only, LoRA, made for this base
    weights = load_file(str(folder / WEIGHTS))
    head = weights.pop(HEAD_KEY, None)
    hidden = base.get_input_embeddings().embedding_dim
    if head is None or tuple(head.shape) != (1, hidden):
        raise AdapterError(
            f"{folder} has no one-output score head for a {hidden}-wide base ({HEAD_KEY}); it is not a reward "
            "model: train one with `python -m playground train reward`"
        )
    config = LoraConfig.from_pretrained(str(folder))
    config.task_type, config.modules_to_save, config.inference_mode = "CAUSAL_LM", None, True
    weights = {key: value for key, value in weights.items() if ".lora_" in key}
    dtype = next(base.parameters()).dtype
    return RewardModel(folder, info, head.to(dtype)), config, weights


def last_hidden(peft_model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, hidden) final-layer states at each row's last token; rows are left-padded, so that is position -1.
    Positions count from each row's first real token, as they did in training."""
    body = peft_model.get_base_model().model  # the decoder stack without the output layer
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    states = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).last_hidden_state
    return states[:, -1]
