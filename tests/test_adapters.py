"""Adapter folders are checked before they touch the model: safetensors only, LoRA, made for this base."""

import json
import shutil

import pytest
import torch

import tiny
from playground.errors import AdapterError
from playground.models.adapters import check_adapter


def copy_adapter(source, tmp_path, name="adapter"):
    target = tmp_path / name
    shutil.copytree(source, target)
    return target


def test_a_good_adapter_passes(tiny_paths, runtime):
    info = check_adapter(tiny_paths["sft"], runtime.model_id, runtime.base)
    assert info.rank == 4
    assert info.modules == 2 * 7  # every linear layer of two decoder layers


def test_pickle_only_weights_are_refused(tiny_paths, runtime, tmp_path):
    folder = copy_adapter(tiny_paths["sft"], tmp_path)
    (folder / "adapter_model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, folder / "adapter_model.bin")
    with pytest.raises(AdapterError, match="only pickle weights \\(adapter_model.bin\\).*safetensors"):
        runtime.load_adapter("pickled", folder)
    assert runtime.adapters.keys() == {"sft", "rlhf"}  # nothing changed


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: shutil.rmtree(f), "does not exist"),
        (lambda f: (f / "adapter_model.safetensors").unlink(), "has no adapter_model.safetensors"),
        (lambda f: (f / "adapter_config.json").unlink(), "has no adapter_config.json"),
        (lambda f: (f / "adapter_config.json").write_text("{not json"), "is not valid JSON"),
        (lambda f: (f / "adapter_model.safetensors").write_bytes(b"\x00" * 64), "could not be read"),
        (lambda f: _edit_config(f, peft_type="PREFIX_TUNING"), "only LoRA adapters"),
        (lambda f: _edit_config(f, base_model_name_or_path="meta-llama/Llama-3.1-8B"), "made for base"),
    ],
)
def test_broken_adapters_get_a_clear_message(tiny_paths, runtime, tmp_path, damage, message):
    folder = copy_adapter(tiny_paths["sft"], tmp_path)
    damage(folder)
    with pytest.raises(AdapterError, match=message):
        runtime.load_adapter("broken", folder)
    assert "broken" not in runtime.adapters


def test_adapter_for_another_base_shape_is_refused(tiny_paths, runtime, tmp_path):
    other_base = tmp_path / "other-base"
    tokenizer = tiny.build_tokenizer(other_base)
    tiny.build_model(other_base, vocab_size=len(tokenizer), hidden_size=48)
    folder = tiny.build_adapter(other_base, tmp_path / "other-adapter", seed=3)
    _edit_config(folder, base_model_name_or_path=str(tiny_paths["base"]))  # even when its config claims our base
    with pytest.raises(AdapterError, match="has shape .* the adapter was made for another base model"):
        runtime.load_adapter("other", folder)


def _edit_config(folder, **changes):
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
