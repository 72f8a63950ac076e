"""Checks an adapter folder before it touches the model: safetensors only, LoRA, and made for this base."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from playground.errors import AdapterError

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
PICKLE_WEIGHTS = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")
PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class AdapterInfo:
    folder: Path
    base_model: str | None  # the base it was trained on, as its config records it
    rank: int
    modules: int  # how many base layers it changes


def check_adapter(folder: Path, base_model_id: str, model: torch.nn.Module) -> AdapterInfo:
    """Raise AdapterError unless `folder` is a safetensors LoRA adapter whose layers fit `model`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AdapterError(f"adapter folder {folder} does not exist; check the adapter path in the lineup")
    weights = folder / WEIGHTS
    if not weights.is_file():
        pickled = [name for name in PICKLE_WEIGHTS if (folder / name).is_file()]
        if pickled:
            raise AdapterError(
                f"{folder} holds only pickle weights ({pickled[0]}), which can run code when loaded; "
                f"re-save the adapter with safetensors (PEFT's save_pretrained does by default) to get {WEIGHTS}"
            )
        raise AdapterError(f"{folder} has no {WEIGHTS}; it is not a complete PEFT adapter folder")
    config = _read_config(folder)
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"{folder}: peft_type is {config.get('peft_type')!r}; only LoRA adapters are supported")
    recorded_base = config.get("base_model_name_or_path")
    if recorded_base and _short_name(recorded_base) != _short_name(base_model_id):
        raise AdapterError(
            f"{folder} was made for base {recorded_base!r}, but the running base is {base_model_id!r}; "
            "load it with its own base, or train a new adapter on this one"
        )
    return AdapterInfo(folder, recorded_base, int(config.get("r", 0)), _check_shapes(weights, model, folder))


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG
    if not path.is_file():
        raise AdapterError(f"{folder} has no {CONFIG}; it is not a complete PEFT adapter folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path} is not valid JSON ({exc}); restore it from the adapter's source") from None
    if not isinstance(config, dict):
        raise AdapterError(f"{path} must hold a JSON object")
    return config


def _check_shapes(weights: Path, model: torch.nn.Module, folder: Path) -> int:
    """Every LoRA matrix must sit on a layer of this base with matching in/out sizes."""
    modules = set()
    try:
        with safe_open(str(weights), framework="pt") as tensors:
            for key in tensors.keys():
                module_path, part = _split_key(key)
                if part is None:
                    continue
                shape = tuple(tensors.get_slice(key).get_shape())
                layer = _find_module(model, module_path)
                if layer is None:
                    raise AdapterError(
                        f"{folder} changes layer {module_path!r}, which this base does not have: "
                        "the adapter was made for another base model"
                    )
                in_size = getattr(layer, "in_features", None)
                out_size = getattr(layer, "out_features", None)
                if (part == "lora_A" and shape[1] != in_size) or (part == "lora_B" and shape[0] != out_size):
                    raise AdapterError(
                        f"{folder}: {key} has shape {list(shape)}, but layer {module_path!r} of this base is "
                        f"{in_size} -> {out_size}: the adapter was made for another base model"
                    )
                modules.add(module_path)
    except AdapterError:
        raise
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise AdapterError(f"{weights} could not be read ({exc}); the file is damaged or incomplete") from None
    if not modules:
        raise AdapterError(f"{weights} holds no LoRA weights; it is not a LoRA adapter")
    return len(modules)


def _split_key(key: str) -> tuple[str, str | None]:
    """'base_model.model.model.layers.0.mlp.up_proj.lora_A.weight' -> ('model.layers.0.mlp.up_proj', 'lora_A')."""
    for part in ("lora_A", "lora_B"):
        marker = f".{part}."
        if marker in key:
            module = key.split(marker)[0]
            return module.removeprefix(PEFT_PREFIX), part
    return key, None


def _find_module(model: torch.nn.Module, path: str) -> torch.nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _short_name(model_id: str) -> str:
    """'google/gemma-3-270m', '/cache/gemma-3-270m/' and 'gemma-3-270m' name the same base."""
    return Path(model_id.rstrip("/")).name.lower()
