"""The real CLI in a subprocess: answers on stdout, expected errors as one line and exit code 2."""

import os
import subprocess
import sys

import pytest

from playground.models.generation import SamplingSettings, generate_one
from playground.prompting import render

from conftest import REPO


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "playground", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_generate_prints_the_variants_answer(tiny_config, runtime, tmp_path):
    result = run_cli(
        "generate", "--config", str(tiny_config), "--cache-dir", str(tmp_path),
        "--variant", "sft", "--max-new-tokens", "8", "日本の首都は",
    )
    assert result.returncode == 0, result.stderr
    prompt = render([{"role": "user", "content": "日本の首都は"}], "chat")  # sft is a chat variant
    expected = generate_one(runtime, prompt, "sft", SamplingSettings(max_new_tokens=8)).text
    assert expected.strip()
    assert result.stdout == expected + "\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--base", "/no/such/folder"], "is not 'default', an existing model folder, a .gguf file, or a hub id"),
        (["--base", "/no/such/model.gguf"], "no such GGUF file"),
        (["--base", "someone/some-model"], "could not get 'someone/some-model' from the Hugging Face hub"),
        (["--config", "/no/such/lineup.toml"], "no such lineup file"),
        (["--variant", "nope"], "unknown variant 'nope'"),
        (["--temperature", "-2"], "temperature = -2.0 is out of range"),
    ],
)
def test_expected_errors_are_one_line_without_traceback(args, message, tmp_path):
    result = run_cli("generate", "--cache-dir", str(tmp_path), *args, "Hello", env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_folder_without_config_json(tmp_path):
    (tmp_path / "model").mkdir()
    result = run_cli("generate", "--base", str(tmp_path / "model"), "Hello")
    assert result.returncode == 2
    assert "has no config.json" in result.stderr


def test_bench_prints_one_json_object(tiny_config, tmp_path):
    import json

    result = run_cli("bench", "generation", "--json", "--config", str(tiny_config), "--tokens", "6")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in (
        "single_tokens_per_s", "first_token_ms", "side_by_side_ratio", "sequential_ratio",
        "memory_ratio", "bandwidth_gb_s", "bandwidth_fraction",
    ):
        assert isinstance(report[key], (int, float)) and report[key] > 0, key
    assert report["tokens"] == 6
