"""Shared fixtures: a tiny Gemma-3-shaped model with a locally trained tokenizer and two LoRA adapters."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for tests/tiny.py

import tiny  # noqa: E402

from playground.config import Lineup, Variant  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory) -> dict[str, Path]:
    return tiny.build_all(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_lineup(tiny_paths) -> Lineup:
    """float32 so that batched and single runs can be compared exactly."""
    return Lineup(
        source=str(tiny_paths["base"]),
        dtype="float32",
        device="cpu",
        variants=(
            Variant("base"),
            Variant("sft", tiny_paths["sft"], "chat"),
            Variant("rlhf", tiny_paths["rlhf"], "chat"),
        ),
    )


@pytest.fixture(scope="session")
def tiny_config(tiny_paths, tmp_path_factory) -> Path:
    """The same lineup as a TOML file, as a user would write it."""
    path = tmp_path_factory.mktemp("config") / "lineup.toml"
    path.write_text(
        f"""
[base]
source = "{tiny_paths['base']}"
dtype = "float32"
device = "cpu"

[[variant]]
name = "base"
format = "plain"

[[variant]]
name = "sft"
adapter = "{tiny_paths['sft']}"
format = "chat"

[[variant]]
name = "rlhf"
adapter = "{tiny_paths['rlhf']}"
format = "chat"
"""
    )
    return path


@pytest.fixture
def runtime(tiny_lineup, tmp_path):
    """A fresh runtime per test: tests load and unload adapters."""
    from playground.models.runtime import Runtime

    return Runtime.from_lineup(tiny_lineup, tmp_path / "cache", log=lambda message: None)


@pytest.fixture
def toy_bank(tmp_path):
    from playground.prompting.banks import load_bank
    from test_prompting import write_bank

    return load_bank(write_bank(tmp_path))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def feedback_store(tmp_path):
    from playground.feedback import FeedbackStore

    return FeedbackStore(tmp_path / "feedback.db")


@pytest.fixture
def server(runtime, tiny_lineup, toy_bank, feedback_store):
    """The real app on a free loopback port, with the tiny model, a toy task bank and a temp feedback.db."""
    from playground.ui.app import build_app, launch_options

    app = build_app(runtime, tiny_lineup, {"toy": toy_bank}, feedback_store)
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
               **launch_options())
    yield f"http://127.0.0.1:{port}/", runtime, tiny_lineup
    app.close()


@pytest.fixture(scope="session")
def tiny_reward(tiny_paths, tmp_path_factory) -> Path:
    """A reward model trained (real TRL RewardTrainer) to prefer the polite answer of separable_feedback."""
    from playground.training.data import training_pairs
    from playground.training.reward import RewardSettings, train_reward
    from test_training import separable_feedback

    tmp = tmp_path_factory.mktemp("reward")
    train, test = training_pairs(separable_feedback(tmp / "feedback.db"))
    return train_reward(str(tiny_paths["base"]), "float32", tmp / "cache", train, test, tmp / "adapters", "reward",
                        settings=RewardSettings(steps=12, batch_size=4, learning_rate=5e-3, max_length=64))
