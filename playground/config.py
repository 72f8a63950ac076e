"""The lineup (which base, which adapters, which prompt format) and run settings, validated once at start."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from playground.errors import ConfigError

DEFAULT_SOURCE = "default"
FORMATS = ("plain", "chat")
DTYPES = ("bfloat16", "float16", "float32")
DEVICES = ("auto", "cpu", "cuda")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # no ".": PEFT keys modules by adapter name
VERSION_PATTERN = re.compile(r"^v(\d+)$")


def default_cache_dir() -> Path:
    """Where converted models live: $PLAYGROUND_CACHE_DIR, else ~/.cache/playground."""
    return Path(os.environ.get("PLAYGROUND_CACHE_DIR") or Path.home() / ".cache" / "playground").expanduser()


@dataclass(frozen=True)
class Variant:
    """One column: the base with an adapter (or none), and how its prompts are written."""

    name: str
    adapter: Path | None = None  # a PEFT adapter folder; None is the bare base
    format: str = "plain"  # "plain" completion for base models, "chat" for instruction-tuned ones


@dataclass(frozen=True)
class Lineup:
    """The base model and the variants built on it."""

    source: str = DEFAULT_SOURCE  # "default", a local model folder, a .gguf file, or a hub id
    dtype: str = "bfloat16"  # weights' dtype; bfloat16 halves memory and doubles CPU speed over float32
    device: str = "auto"  # "auto" picks cuda when present, else cpu
    variants: tuple[Variant, ...] = field(default_factory=lambda: (Variant("base"),))
    feedback_db: Path | None = None  # [feedback] db in the lineup file; --db overrides it
    reward: Path | None = None  # a reward model folder (`train reward`): scores answers, enables best-of-n

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        known = ", ".join(v.name for v in self.variants)
        raise ConfigError(f"unknown variant {name!r}; the lineup has: {known}")

    def describe(self) -> str:
        lines = [f"base: {self.source} ({self.dtype}, device {self.device})"]
        for v in self.variants:
            lines.append(f"  {v.name}: {v.adapter or 'no adapter'} [{v.format}]")
        if self.reward:
            lines.append(f"  reward model: {self.reward}")
        return "\n".join(lines)


def adapter_version(folder: Path | None) -> int | None:
    """N for an adapter folder named vN (adapters/<name>/vN), else None."""
    match = VERSION_PATTERN.match(Path(folder).name) if folder else None
    return int(match.group(1)) if match else None


def adapter_versions(root: Path) -> list[tuple[str, int, Path]]:
    """(name, N, folder) of every adapter version under root (root/<name>/vN/ holding adapter_config.json)."""
    found = []
    if not root.is_dir():
        return found
    for adapter_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        versions = []
        for version_dir in adapter_dir.iterdir():
            match = VERSION_PATTERN.match(version_dir.name)
            if match and (version_dir / "adapter_config.json").is_file():
                versions.append((int(match.group(1)), version_dir))
        found += [(adapter_dir.name, number, folder) for number, folder in sorted(versions)]
    return found


SHIPPED = {"instruct": ("sft", 1), "rlhf": ("rlhf", 2)}  # the project's own adapters (make adapters), by column
# rlhf/v1 (DPO) is the stage rlhf/v2 was built from (`train decision`): kept to rebuild from, not a column of its own
# while rlhf/v2 is there
STAGES = {("rlhf", 1): ("rlhf", 2)}


def discover_adapters(root: Path) -> list[Variant]:
    """The shipped adapters as "instruct" and "rlhf", then every other version as <name>-vN, oldest first;
    reward models and the shipped build stages (STAGES) are not columns."""
    from playground.models.reward import is_reward_model

    versions = [(name, n, folder) for name, n, folder in adapter_versions(root) if not is_reward_model(folder)]
    present = {(name, n) for name, n, _ in versions}
    versions = [(name, n, folder) for name, n, folder in versions if STAGES.get((name, n)) not in present]
    shipped = {where: column for column, where in SHIPPED.items()}
    named = [Variant(shipped[(name, n)], folder, "chat") for name, n, folder in versions if (name, n) in shipped]
    named.sort(key=lambda v: list(SHIPPED).index(v.name))
    others = [Variant(f"{name}-v{n}", folder, "chat") for name, n, folder in versions if (name, n) not in shipped]
    return named + others


def latest_reward_model(root: Path) -> Path | None:
    """The newest reward model version under root, if any."""
    from playground.models.reward import is_reward_model

    rewards = [(n, folder) for _, n, folder in adapter_versions(root) if is_reward_model(folder)]
    return max(rewards, key=lambda r: (r[0], r[1].stat().st_mtime))[1] if rewards else None


def default_lineup(adapters_root: Path = Path("adapters")) -> Lineup:
    """The embedded default base (plain completion), the shipped instruct and rlhf adapters, every other adapter
    version found under adapters/, and the newest reward model there."""
    return Lineup(variants=(Variant("base"), *discover_adapters(adapters_root)),
                  reward=latest_reward_model(adapters_root))


def load_lineup(path: Path) -> Lineup:
    """Read and validate a lineup TOML file; errors name the file, the key and the problem."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such lineup file; check the --config path") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    return parse_lineup(data, where=str(path), relative_to=Path(path).parent)


def parse_lineup(data: dict, where: str = "lineup", relative_to: Path = Path(".")) -> Lineup:
    """Validate a lineup already parsed from TOML."""
    _only_keys(data, {"base", "variant", "feedback", "reward"}, where)
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise ConfigError(f"{where}: [base] must be a table")
    _only_keys(base, {"source", "dtype", "device"}, f"{where}: [base]")
    source = _string(base, "source", DEFAULT_SOURCE, f"{where}: base.source")
    dtype = _choice(base, "dtype", "bfloat16", DTYPES, f"{where}: base.dtype")
    device = _choice(base, "device", "auto", DEVICES, f"{where}: base.device")

    raw_variants = data.get("variant", [{"name": "base"}])
    if not isinstance(raw_variants, list) or not raw_variants:
        raise ConfigError(f"{where}: add at least one [[variant]] table")
    variants = []
    for index, raw in enumerate(raw_variants, start=1):
        at = f"{where}: variant #{index}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{at} must be a table")
        _only_keys(raw, {"name", "adapter", "format"}, at)
        name = _string(raw, "name", None, f"{at}.name")
        if not NAME_PATTERN.match(name):
            raise ConfigError(f"{at}.name = {name!r}: use letters, digits, '_' or '-' (at most 64)")
        if name in {v.name for v in variants}:
            raise ConfigError(f"{at}.name = {name!r} is used twice; give each variant its own name")
        adapter = raw.get("adapter")
        if adapter is not None:
            adapter = _string(raw, "adapter", None, f"{at}.adapter")
            adapter = (relative_to / Path(adapter).expanduser()) if adapter else None
        fmt = _choice(raw, "format", "chat" if adapter else "plain", FORMATS, f"{at}.format")
        variants.append(Variant(name, adapter, fmt))
    feedback = data.get("feedback", {})
    if not isinstance(feedback, dict):
        raise ConfigError(f"{where}: [feedback] must be a table")
    _only_keys(feedback, {"db"}, f"{where}: [feedback]")
    db = _string(feedback, "db", "", f"{where}: feedback.db")
    reward = data.get("reward", {})
    if not isinstance(reward, dict):
        raise ConfigError(f"{where}: [reward] must be a table")
    _only_keys(reward, {"adapter"}, f"{where}: [reward]")
    reward_folder = _string(reward, "adapter", "", f"{where}: reward.adapter")
    return Lineup(source, dtype, device, tuple(variants), relative_to / db if db else None,
                  relative_to / Path(reward_folder).expanduser() if reward_folder else None)


def _only_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed keys are {', '.join(sorted(allowed))}")


def _string(table: dict, key: str, default: str | None, where: str) -> str:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"{where} is missing")
    if not isinstance(value, str):
        raise ConfigError(f"{where} = {value!r} must be a string")
    return value


def _choice(table: dict, key: str, default: str, choices: tuple[str, ...], where: str) -> str:
    value = _string(table, key, default, where)
    if value not in choices:
        raise ConfigError(f"{where} = {value!r}; choose one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, from flags, environment and the lineup file; printed at start."""

    lineup: Lineup = field(default_factory=Lineup)
    db: Path = Path("feedback.db")  # the SQLite file that keeps every answer and vote (--db, [feedback] db)
    host: str = "127.0.0.1"  # listen address; 0.0.0.0 opens the app to the LAN
    port: int = 7860  # listen port
    cache_dir: Path = field(default_factory=default_cache_dir)  # converted base models live here

    def describe(self) -> str:
        return f"{self.lineup.describe()}\ncache: {self.cache_dir}\nfeedback: {self.db}"


def build_lineup(
    config: Path | None = None,
    base: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
    adapters_root: Path = Path("adapters"),
) -> Lineup:
    """The lineup file (or the default lineup) with any flags laid over it, validated."""
    lineup = load_lineup(config) if config else default_lineup(adapters_root)
    overrides = {"source": base, "dtype": dtype, "device": device}
    merged = {k: v for k, v in overrides.items() if v is not None}
    if not merged:
        return lineup
    for key, choices in (("dtype", DTYPES), ("device", DEVICES)):
        if key in merged and merged[key] not in choices:
            raise ConfigError(f"--{key} {merged[key]!r}; choose one of {', '.join(choices)}")
    return replace(lineup, **merged)
