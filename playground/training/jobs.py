"""Training runs in a child process: the app stays responsive, a crash or out-of-memory there never takes the app
down, and Cancel ends it. One run at a time; progress lands in the training_runs table."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from playground.errors import PlaygroundError
from playground.feedback import FeedbackStore


class TrainingBusy(PlaygroundError):
    """A run is already going."""


@dataclass(frozen=True)
class JobSpec:
    kind: str  # "dpo", "kto", "sft" or "reward"
    db: str
    source: str  # the base, as in the lineup
    dtype: str
    cache_dir: str
    adapters_root: str
    name: str  # adapters/<name>/vN
    parent: str | None = None  # adapter folder to continue from
    settings: dict = field(default_factory=dict)
    data: str = "feedback"  # "feedback", "feedback+seed" (mixed with data/'s seed set) or "seed" (data/ only)


def _exit_with_parent() -> None:
    """A run whose app was killed stops too, rather than train on unwatched; its staging folder is no version."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _child(spec: JobSpec, run_id: int) -> None:
    """The child process: train, publish, and record the outcome."""
    sys.stdout = sys.stderr  # the trainer prints its logs; a command's stdout carries only its answer
    _exit_with_parent()
    store = FeedbackStore(spec.db)

    def progress(update: dict) -> None:
        if "step" in update:
            store.update_run(run_id, step=update, message=f"step {update['step']} of {update['of']}")
        else:
            store.update_run(run_id, message=update["message"])

    try:
        train, test = training_data(spec.kind, store, spec.data)
        trainer, settings = TRAINERS[spec.kind]()
        folder = trainer(spec.source, spec.dtype, Path(spec.cache_dir), train, test, Path(spec.adapters_root),
                         spec.name, Path(spec.parent) if spec.parent else None, settings(**spec.settings), progress)
        card = json.loads((folder / "card.json").read_text())
        store.update_run(run_id, status="done", folder=str(folder), version=card["version"], adapter=spec.name,
                         data_hash=card["data_hash"], message=f"published {folder}")
    except PlaygroundError as exc:
        store.update_run(run_id, status="failed", message=str(exc))
    except BaseException as exc:
        store.update_run(run_id, status="failed", message=f"{type(exc).__name__}: {exc}")
        raise


def _dpo():
    from playground.training.dpo import DPOSettings, train_dpo

    return train_dpo, DPOSettings


def _sft():
    from playground.training.sft import SFTSettings, train_sft

    return train_sft, SFTSettings


def _kto():
    from playground.training.kto import KTOSettings, train_kto

    return train_kto, KTOSettings


def _reward():
    from playground.training.reward import RewardSettings, train_reward

    return train_reward, RewardSettings


def _decision():
    from playground.training.decision import DecisionSettings, train_decision

    return train_decision, DecisionSettings


# imported in the child only: not the app
TRAINERS = {"dpo": _dpo, "kto": _kto, "sft": _sft, "reward": _reward, "decision": _decision}
DATA_SOURCES = ("feedback", "feedback+seed", "seed")


def training_data(kind: str, store: FeedbackStore, data: str = "feedback"):
    """(train, held-out) examples for a kind of run, from feedback, the seed set in data/, or both;
    NotEnoughData says what is missing."""
    from playground.training import seed
    from playground.training.data import kto_examples, sft_examples, training_pairs

    readers = {"dpo": training_pairs, "reward": training_pairs, "kto": kto_examples, "sft": sft_examples}
    seeds = {"dpo": seed.seed_pairs, "reward": seed.seed_pairs, "kto": seed.seed_rated, "sft": seed.seed_examples,
             "decision": seed.decision_data}
    if kind not in seeds:
        raise PlaygroundError(f"unknown training kind {kind!r}; use one of {', '.join(seeds)}")
    if data not in DATA_SOURCES:
        raise PlaygroundError(f"unknown training data {data!r}; use one of {', '.join(DATA_SOURCES)}")
    if kind not in readers and data != "seed":
        raise PlaygroundError(f"{kind} trains on data/'s written harmful requests and look-alikes only; "
                              "add --seed-only")
    if data == "seed":
        return seeds[kind]()
    if data == "feedback":
        return readers[kind](store)
    train, test = readers[kind](store, minimum=0)
    seed_train, seed_test = seeds[kind]()
    return train + seed_train, test + seed_test


class Jobs:
    """Starts, watches and cancels training runs, one at a time."""

    def __init__(self, store: FeedbackStore):
        self.store = store
        self.process: multiprocessing.Process | None = None
        self.run_id: int | None = None
        self.spec: JobSpec | None = None
        self._close_orphaned_runs()

    def _close_orphaned_runs(self) -> None:
        """Runs still marked running whose process is gone were cut off (the app was killed): say so."""
        for run in self.store.query("SELECT id, pid FROM training_runs WHERE status = 'running'"):
            if not _process_alive(run["pid"]):
                self.store.update_run(run["id"], status="failed",
                                      message="the app stopped during the run; no version was published")

    def running(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def start(self, spec: JobSpec) -> int:
        if self.running():
            raise TrainingBusy(f"training run #{self.run_id} is still going; wait for it or cancel it")
        training_data(spec.kind, self.store, spec.data)  # too few examples: say so now, not from the child
        self.run_id = self.store.start_run(spec.kind, asdict(spec))
        self.spec = spec
        # spawn, not fork: a forked child would inherit the app's threads and torch state.
        self.process = multiprocessing.get_context("spawn").Process(target=_child, args=(spec, self.run_id),
                                                                    name=f"training-{self.run_id}")
        self.process.start()
        self.store.update_run(self.run_id, pid=self.process.pid)
        return self.run_id

    def wait(self, timeout: float | None = None) -> dict:
        """The run's row once the child has ended (or after `timeout` seconds)."""
        if self.process is not None:
            self.process.join(timeout)
            if not self.process.is_alive() and self.store.run(self.run_id)["status"] == "running":
                # it died without a word: killed, or out of memory
                self.store.update_run(self.run_id, status="failed",
                                      message=f"the training process ended abruptly (exit code {self.process.exitcode})")
                self._clean_staging()
        return self.store.run(self.run_id)

    def cancel(self) -> None:
        if not self.running():
            return
        self.process.kill()
        self.process.join()
        self.store.update_run(self.run_id, status="cancelled", message="cancelled")
        self._clean_staging()

    def _clean_staging(self) -> None:
        """A killed run leaves its hidden staging folder; no version folder is ever half written."""
        for staged in (Path(self.spec.adapters_root) / self.spec.name).glob(".staging-*"):
            shutil.rmtree(staged, ignore_errors=True)


def _process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process with that number
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return True  # no /proc here: trust the signal check
