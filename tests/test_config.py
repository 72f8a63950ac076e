"""The lineup file: parsed, validated, and errors that name the key and the problem."""

import shutil
from pathlib import Path

import pytest

from playground.config import build_lineup, default_lineup, discover_adapters, load_lineup
from playground.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lineup.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_lineup_file_is_read_with_adapters_relative_to_it(tmp_path):
    path = write(
        tmp_path,
        """
[base]
source = "default"
dtype = "float32"

[[variant]]
name = "base"

[[variant]]
name = "instruct"
adapter = "adapters/sft/v1"
""",
    )
    lineup = load_lineup(path)
    assert lineup.dtype == "float32"
    assert [v.name for v in lineup.variants] == ["base", "instruct"]
    assert lineup.variants[0].adapter is None and lineup.variants[0].format == "plain"
    assert lineup.variants[1].adapter == tmp_path / "adapters/sft/v1"
    assert lineup.variants[1].format == "chat"  # an adapter defaults to the chat format


@pytest.mark.parametrize(
    "text, message",
    [
        ("[base]\nsorce = 'default'\n", "unknown key 'sorce'"),
        ("[base]\ndtype = 'int3'\n", "base.dtype = 'int3'; choose one of bfloat16, float16, float32"),
        ("[base]\ndevice = 'tpu'\n", "base.device = 'tpu'"),
        ("[[variant]]\nname = 'a'\n[[variant]]\nname = 'a'\n", "'a' is used twice"),
        ("[[variant]]\nname = 'has space'\n", "variant #1.name = 'has space'"),
        ("[[variant]]\nname = 'x'\nformat = 'json'\n", "variant #1.format = 'json'; choose one of plain, chat"),
        ("[[variant]]\nformat = 'chat'\n", "variant #1.name is missing"),
        ("[[variant]]\nname = 3\n", "variant #1.name = 3 must be a string"),
        ("variant = []\n", "add at least one [[variant]]"),
        ("[base\nsource=1", "not valid TOML"),
    ],
)
def test_bad_lineup_names_file_key_and_problem(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_lineup(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_feedback_db_from_the_lineup_file(tmp_path):
    lineup = load_lineup(write(tmp_path, "[feedback]\ndb = 'room/feedback.db'\n"))
    assert lineup.feedback_db == tmp_path / "room/feedback.db"
    assert load_lineup(write(tmp_path, "[base]\n")).feedback_db is None
    with pytest.raises(ConfigError, match="\\[feedback\\]: unknown key 'path'"):
        load_lineup(write(tmp_path, "[feedback]\npath = 'x.db'\n"))


def test_missing_lineup_file(tmp_path):
    with pytest.raises(ConfigError, match="no such lineup file"):
        load_lineup(tmp_path / "nope.toml")


def test_default_lineup_is_base_instruct_rlhf_then_every_other_version(tmp_path):
    folders = ("sft/v1", "sft/v2", "rlhf/v1", "rlhf/v2", "rlhf/v10", "reward/v1", "reward/v2")
    for folder in (*folders, "rlhf/notes", "empty/v1"):
        (tmp_path / folder).mkdir(parents=True)
    for folder in folders:
        (tmp_path / folder / "adapter_config.json").write_text("{}")
    for folder in ("reward/v1", "reward/v2"):
        (tmp_path / folder / "card.json").write_text('{"kind": "reward"}')
    (tmp_path / "rlhf/v2/card.json").write_text('{"kind": "decision"}')
    lineup = default_lineup(tmp_path)
    # rlhf/v1 is the DPO stage the shipped rlhf/v2 was built from: no column while rlhf/v2 is there
    assert [v.name for v in lineup.variants] == ["base", "instruct", "rlhf", "rlhf-v10", "sft-v2"]
    assert lineup.variant("instruct").adapter == tmp_path / "sft/v1"
    assert lineup.variant("rlhf").adapter == tmp_path / "rlhf/v2"
    assert lineup.reward == tmp_path / "reward/v2"  # the newest reward model scores; it is not a column
    assert lineup.source == "default" and lineup.dtype == "bfloat16"
    assert lineup.variant("base").format == "plain" and all(v.format == "chat" for v in lineup.variants[1:])
    assert discover_adapters(tmp_path / "missing") == [] and default_lineup(tmp_path / "missing").reward is None
    shutil.rmtree(tmp_path / "rlhf/v2")  # without what it was built for, the stage is a column like any version
    assert [v.name for v in default_lineup(tmp_path).variants] == ["base", "instruct", "rlhf-v1", "rlhf-v10", "sft-v2"]


def test_flags_override_the_file(tmp_path):
    path = write(tmp_path, "[base]\nsource = 'default'\n")
    lineup = build_lineup(path, base="/models/mine", dtype="float32")
    assert (lineup.source, lineup.dtype, lineup.device) == ("/models/mine", "float32", "auto")


def test_unknown_variant_lists_the_lineup():
    with pytest.raises(ConfigError, match="unknown variant 'nope'; the lineup has: base"):
        default_lineup(Path("/nonexistent")).variant("nope")


def test_reward_model_in_the_lineup_file(tmp_path):
    lineup = load_lineup(write(tmp_path, "[reward]\nadapter = 'adapters/reward/v3'\n"))
    assert lineup.reward == tmp_path / "adapters/reward/v3" and "reward model" in lineup.describe()
    with pytest.raises(ConfigError, match=r"\[reward\]: unknown key 'folder'; allowed keys are adapter"):
        load_lineup(write(tmp_path, "[reward]\nfolder = 'x'\n"))
