"""The README documents every command and flag (a command nobody can find is a command nobody uses)."""

import argparse

from playground.cli import build_parser

from conftest import REPO


def test_every_command_and_flag_is_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, sub in commands.choices.items():
        if f"python -m playground {name}" not in readme:
            missing.append(f"command {name}")
        for action in sub._actions:
            missing += [f"{name} {flag}" for flag in action.option_strings if flag.startswith("--") and flag != "--help" and flag not in readme]
    assert not missing, f"README.md lacks: {', '.join(missing)}"


def test_readme_states_the_license_of_the_default_model():
    assert "Gemma Terms of Use" in (REPO / "README.md").read_text(encoding="utf-8")
