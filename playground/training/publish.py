"""Adapter versions: adapters/<name>/vN, written to a temporary folder and renamed into place, never overwritten."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

VERSION = re.compile(r"^v(\d+)$")


def next_version(root: Path, name: str) -> int:
    folder = Path(root) / name
    numbers = [int(m.group(1)) for p in folder.glob("v*") if (m := VERSION.match(p.name))] if folder.is_dir() else []
    return max(numbers, default=0) + 1


def staging_folder(root: Path, name: str) -> Path:
    """A hidden temporary folder beside the versions; an interrupted run leaves only this, which is not a version."""
    parent = Path(root) / name
    parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    staged.chmod(0o777 & ~umask)  # mkdtemp makes it private; a published version is as readable as its parent
    return staged


def publish(staged: Path, root: Path, name: str, card: dict) -> Path:
    """Write card.json into `staged` and rename it to the next free vN; returns that folder."""
    while True:
        version = next_version(root, name)
        target = Path(root) / name / f"v{version}"
        (staged / "card.json").write_text(json.dumps({**card, "version": version}, indent=2, ensure_ascii=False))
        (staged / "README.md").write_text(readme(card, name, version), encoding="utf-8")  # not PEFT's empty template
        try:
            os.rename(staged, target)  # fails if another run took this number first: then try the next
            return target
        except OSError:
            if not target.exists():
                raise


DECISION_NOTE = " with a refuse-or-answer decision (`decision.safetensors`)"


def readme(card: dict, name: str, version: int) -> str:
    """A short human-readable card; card.json is the machine-readable one."""
    counts = next((v for k, v in card.items() if isinstance(v, dict) and "held_out" in v), {})
    metrics = card.get("metrics", {})
    befores = [k.removesuffix("_before") for k in metrics if k.endswith("_before")]
    lines = [
        f"# {name} v{version}",
        "",
        f"A LoRA adapter{DECISION_NOTE if card.get('kind') == 'decision' else ''} for `{card.get('base_model')}`, "
        "trained by Alignment Playground "
        f"(`python -m playground train {card.get('kind')}`). The details are in `card.json`.",
        "",
        f"- Method: {card.get('kind')}, "
        + (f"continuing from `{card['parent']}`" if card.get("parent") else "a fresh LoRA on the base"),
        f"- Data: {counts.get('train', '?')} training and {counts.get('held_out', '?')} held-out items "
        f"(sha256 {str(card.get('data_hash', '?'))[:12]}…)",
        *[f"- {m.replace('_', ' ')}: {metrics[m + '_before']} before, {metrics.get(m + '_after')} after"
          for m in befores],
        "",
        "It needs its base model, whose terms (for Gemma, the Gemma Terms of Use) also apply to it.",
        "",
    ]
    return "\n".join(lines)


def discard(staged: Path) -> None:
    shutil.rmtree(staged, ignore_errors=True)
