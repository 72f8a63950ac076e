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


def test_eval_prompting_prints_accuracy_and_n_per_mode(tiny_config, tmp_path):
    import json

    details = tmp_path / "details.jsonl"
    result = run_cli(
        "eval-prompting", "--config", str(tiny_config), "--task", "sentiment", "--modes", "zero,one,few-cot",
        "--variant", "sft", "--lang", "ja", "--limit", "3", "--k", "2", "--json", "--details", str(details),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["task"], report["variant"], report["lang"], report["k"]) == ("sentiment", "sft", "ja", 2)
    assert list(report["modes"]) == ["zero", "one", "few-cot"]
    for mode in report["modes"].values():
        assert mode["n"] == 3 and 0.0 <= mode["accuracy"] <= 1.0
    rows = [json.loads(line) for line in details.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 9
    few_cot = next(r for r in rows if r["mode"] == "few-cot")
    assert few_cot["prompt"].count("答え:") == 2  # two worked examples in Japanese, in the chat turns
    assert few_cot["prompt"].endswith("ステップごとに考えてみましょう。<end_of_turn>\n<start_of_turn>model\n")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "poetry"], "no example bank 'poetry'"),
        (["--task", "sentiment", "--modes", "zero,two"], "unknown two"),
        (["--task", "sentiment", "--modes", "few", "--k", "30"], "k = 30, but the sentiment bank has 8 en exemplars"),
    ],
)
def test_eval_prompting_errors(tiny_config, args, message):
    result = run_cli("eval-prompting", "--config", str(tiny_config), *args, "--json")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_generate_with_a_mode_shows_the_exact_prompt(tiny_config):
    result = run_cli(
        "generate", "--config", str(tiny_config), "--task", "arithmetic", "--mode", "one", "--show-prompt",
        "--max-new-tokens", "4", "What is 2 + 2?",
    )
    assert result.returncode == 0, result.stderr
    assert "Solve the math word problem.\n\nQ: A baker makes 5 trays" in result.stderr
    assert result.stderr.split("--- prompt ---\n")[1].split("\n--- answer ---")[0].endswith("Q: What is 2 + 2?\nA:")


def test_prompting_needs_neither_torch_nor_gradio():
    code = "import sys, playground.prompting.modes, playground.prompting.scoring; print(sorted({'torch', 'gradio'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "[]", result.stderr


def test_serve_ends_with_the_message_when_the_model_cannot_be_loaded(tmp_path):
    from conftest import free_port

    result = run_cli("serve", "--base", str(tmp_path / "missing.gguf"), "--port", str(free_port()),
                     "--db", str(tmp_path / "feedback.db"))
    assert result.returncode == 2
    assert "no such GGUF file" in result.stderr and "Traceback" not in result.stderr
