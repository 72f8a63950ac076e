"""One copy of the base in memory; adapters attached by name, hot-loaded and unloaded while it runs."""

import shutil

import pytest
import torch

from playground.errors import AdapterError
from playground.models.generation import SamplingSettings, generate_one

PROMPT = "The capital of Japan is"
GREEDY = SamplingSettings(max_new_tokens=12)


def storage_of(model):
    return {name: p.data_ptr() for name, p in model.named_parameters() if "lora_" not in name}


def test_adapters_share_one_copy_of_the_base(tiny_lineup, tmp_path):
    from playground.models.runtime import Runtime
    from playground.models.sources import load_base

    base = load_base(tiny_lineup.source, "float32", "cpu", tmp_path, log=lambda m: None)
    base_numel = sum(p.numel() for p in base.model.parameters())
    before = {p.data_ptr() for p in base.model.parameters()}
    runtime = Runtime(base)
    for variant in tiny_lineup.variants[1:]:
        runtime.load_adapter(variant.name, variant.adapter)
    lora = [p for n, p in runtime.model.named_parameters() if "lora_" in n]
    frozen = [p for n, p in runtime.model.named_parameters() if "lora_" not in n]
    assert {p.data_ptr() for p in frozen} == before  # the very same tensors, not copies
    assert sum(p.numel() for p in frozen) == base_numel
    assert len(lora) == 2 * 2 * 14  # two adapters x (A, B) x 14 layers
    assert not any(p.requires_grad for p in runtime.model.parameters())


def test_the_output_layer_gets_a_freshly_laid_out_input(tiny_lineup, tmp_path):
    # A strided view there sends a CPU bf16 linear through a copy of the whole output matrix (see sources.py)
    from playground.models.sources import load_base

    base = load_base(tiny_lineup.source, "float32", "cpu", tmp_path, log=lambda m: None)
    seen = []
    base.model.get_output_embeddings().register_forward_hook(lambda module, args, out: seen.append(args[0]))
    ids = torch.tensor([[2, 10, 11, 12, 13], [2, 20, 21, 22, 23]])
    with torch.no_grad():
        logits = base.model(input_ids=ids, logits_to_keep=2).logits
    (given,) = seen
    assert given.shape == (2, 2, given.shape[-1])
    assert given.stride() == (2 * given.shape[-1], given.shape[-1], 1)  # not the (5 x hidden, ...) of the slice
    assert logits.shape[:2] == (2, 2)


def test_hot_load_and_unload_without_reloading_the_base(runtime, tiny_paths, tmp_path):
    base_storage = storage_of(runtime.model)
    base_answer = generate_one(runtime, PROMPT, None, GREEDY).tokens
    sft_answer = generate_one(runtime, PROMPT, "sft", GREEDY).tokens
    assert sft_answer != base_answer  # the adapter changes what the model says

    copy = tmp_path / "sft-copy"
    shutil.copytree(tiny_paths["sft"], copy)
    runtime.load_adapter("sft2", copy)
    assert generate_one(runtime, PROMPT, "sft2", GREEDY).tokens == sft_answer
    assert storage_of(runtime.model) == base_storage

    runtime.unload_adapter("sft2")
    with pytest.raises(AdapterError, match="adapter 'sft2' is not loaded; loaded: sft, rlhf"):
        generate_one(runtime, PROMPT, "sft2", GREEDY)
    assert generate_one(runtime, PROMPT, "sft", GREEDY).tokens == sft_answer
    assert generate_one(runtime, PROMPT, None, GREEDY).tokens == base_answer


def test_unloading_every_adapter_leaves_the_plain_base(runtime):
    base_answer = generate_one(runtime, PROMPT, None, GREEDY).tokens
    runtime.unload_adapter("sft")
    runtime.unload_adapter("rlhf")
    assert runtime.model is runtime.base
    assert not any("lora_" in name for name, _ in runtime.model.named_parameters())
    assert generate_one(runtime, PROMPT, None, GREEDY).tokens == base_answer
    with pytest.raises(AdapterError, match="no adapter named 'sft' is loaded"):
        runtime.unload_adapter("sft")


def test_same_name_twice_is_refused(runtime, tiny_paths):
    with pytest.raises(AdapterError, match="already loaded"):
        runtime.load_adapter("sft", tiny_paths["rlhf"])


def test_answers_match_plain_peft(runtime, tiny_paths):
    """Our runtime's answer with an adapter equals PEFT's own PeftModel.from_pretrained + generate."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_paths["base"]))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_paths["base"]), dtype=torch.float32)
    reference = PeftModel.from_pretrained(model, str(tiny_paths["rlhf"])).eval()
    ids = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        out = reference.generate(**ids, max_new_tokens=12, do_sample=False, min_new_tokens=12)
    expected = out[0, ids["input_ids"].shape[1] :].tolist()
    ours = generate_one(runtime, PROMPT, "rlhf", SamplingSettings(max_new_tokens=12, min_new_tokens=12))
    assert ours.tokens == expected
