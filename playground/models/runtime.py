"""One copy of the base model in memory, with LoRA adapters attached to it by name (PEFT)."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from playground.config import Lineup
from playground.errors import AdapterError
from playground.models import model_thread
from playground.models.adapters import AdapterInfo, check_adapter
from playground.models.decision_gate import DecisionGate, find_decoder, read_decision
from playground.models.reward import ADAPTER as REWARD
from playground.models.reward import RewardModel, last_hidden, read_reward_model, scored_text
from playground.models.sources import LoadedBase, Log, load_base
from playground.models.stacked_lora import BASE, stacked_lora, supported
from playground.prompting.formats import END_OF_TURN


class Runtime:
    """The base model, its tokenizer, and named adapters that can be loaded and unloaded while serving.

    Everything that touches the model runs on the model thread (see model_thread.py), one job at a time.
    """

    def __init__(self, base: LoadedBase, stacked: bool = True):
        self.base = base.model  # the plain model; PEFT injects LoRA layers into it in place
        self.model: torch.nn.Module = base.model  # becomes a PeftModel once an adapter is loaded
        self.tokenizer = base.tokenizer
        self.tokenizer.padding_side = "left"  # batched decoding appends on the right
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model_id = base.model_id
        self.origin = base.origin
        self.adapters: dict[str, AdapterInfo] = {}
        self.decisions: dict[str, DecisionGate] = {}  # adapters that carry a refuse-or-answer decision
        self._batch_names: list[str] | None = None  # within mixed_batch: the adapter of each row
        self.reward: RewardModel | None = None  # scores answers when loaded (load_reward_model)
        self.stacked = stacked  # serve mixed batches with stacked LoRA (faster) rather than PEFT's adapter loop

    @classmethod
    def from_lineup(cls, lineup: Lineup, cache_dir: Path, log: Log = print, adapters: bool = True) -> "Runtime":
        """Load the lineup's base (and, unless adapters=False, its variants' adapters) on the model thread."""

        def load() -> Runtime:
            runtime = cls(load_base(lineup.source, lineup.dtype, lineup.device, cache_dir, log))
            for variant in lineup.variants if adapters else ():
                if variant.adapter is not None:
                    runtime.load_adapter(variant.name, variant.adapter)
                    log(f"adapter {variant.name}: {variant.adapter}")
            if adapters and lineup.reward is not None:
                runtime.load_reward_model(lineup.reward)
                log(f"reward model: {lineup.reward}")
            return runtime

        return model_thread.call(load)

    @property
    def context_window(self) -> int:
        """Tokens the model can attend to: prompt and answer together."""
        return int(getattr(self.base.config, "max_position_embeddings", 8192))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    @property
    def device(self) -> torch.device:
        return next(self.base.parameters()).device

    def load_adapter(self, name: str, folder: Path) -> AdapterInfo:
        """Attach the adapter in `folder` under `name`, without reloading the base (hot-load)."""
        from peft import PeftModel

        if name == BASE or name in self.adapters:
            raise AdapterError(f"an adapter named {name!r} is already loaded; unload it first or pick another name")
        info = check_adapter(Path(folder), self.model_id, self.base)
        decision = read_decision(Path(folder), self.base)

        def attach() -> None:
            try:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
                else:
                    self.model = PeftModel.from_pretrained(self.base, str(folder), adapter_name=name, is_trainable=False)
            except (ValueError, RuntimeError, KeyError) as exc:
                raise AdapterError(f"PEFT could not load {folder}: {str(exc).splitlines()[0][:300]}") from None
            self.model.eval()  # mixed-adapter batches refuse training mode
            self.adapters[name] = info
            if decision is not None:
                self.decisions[name] = DecisionGate(self.model, self.tokenizer, decision, self._rows_using(name))

        model_thread.call(attach)
        return info

    def unload_adapter(self, name: str) -> None:
        """Detach an adapter; the base and the other adapters stay as they are."""
        if name not in self.adapters:
            raise AdapterError(f"no adapter named {name!r} is loaded; loaded: {', '.join(self.adapters) or 'none'}")

        def detach() -> None:
            if name in self.decisions:
                self.decisions.pop(name).remove()
            self._remove_peft_adapter(name)
            del self.adapters[name]

        model_thread.call(detach)

    def _remove_peft_adapter(self, name: str) -> None:
        """On the model thread: drop one adapter; the last one out removes the LoRA layers, leaving the plain base."""
        if len(self.model.peft_config) == 1:
            self.model = self.model.unload()
        else:
            self.model.delete_adapter(name)

    def load_reward_model(self, folder: Path) -> RewardModel:
        """Attach a reward model (from `train reward`) to score answers, in place of any loaded before."""
        from peft import PeftModel, get_peft_model, set_peft_model_state_dict

        reward, config, weights = read_reward_model(Path(folder), self.model_id, self.base)

        def attach() -> None:
            if self.reward is not None:
                self._remove_peft_adapter(REWARD)
                self.reward = None
            if isinstance(self.model, PeftModel):
                self.model.add_adapter(REWARD, config)
            else:
                self.model = get_peft_model(self.base, config, adapter_name=REWARD)
            set_peft_model_state_dict(self.model, weights, adapter_name=REWARD)
            self.model.requires_grad_(False)
            self.model.eval()
            self.reward = reward

        model_thread.call(attach)
        return reward

    def reward_scores(self, prompt: str, completions: list[str]) -> list[float]:
        """The reward model's score of each answer to `prompt` (a chat prompt); each answer is closed with Gemma's
        turn end where it lacks one, as the answers it was trained on were."""
        if self.reward is None:
            raise AdapterError("no reward model is loaded; train one with `python -m playground train reward`")
        closed = [c if c.endswith(END_OF_TURN) else c + END_OF_TURN for c in completions]
        texts = [scored_text(prompt, completion, self.tokenizer.eos_token) for completion in closed]

        def score() -> list[float]:
            batch = self.tokenizer(texts, return_tensors="pt", padding=True).to(self.device)  # left-padded
            with torch.inference_mode(), self.mixed_batch([REWARD] * len(texts)) as extra:
                if extra:  # PEFT's own path takes adapter names per call; the body alone cannot, so set it
                    self.model.set_adapter(REWARD)
                states = last_hidden(self.model, batch["input_ids"], batch["attention_mask"])
            return [float(v) for v in (states @ self.reward.head.t())[:, 0]]

        return model_thread.call(score)

    def adapter_names(self, names: list[str | None]) -> list[str]:
        """Map variant adapters (None = bare base) to PEFT's mixed-batch names, checking each is loaded."""
        resolved = []
        for name in names:
            if name is None or name == BASE:
                resolved.append(BASE)
            elif name in self.adapters:
                resolved.append(name)
            else:
                raise AdapterError(f"adapter {name!r} is not loaded; loaded: {', '.join(self.adapters) or 'none'}")
        return resolved

    @contextmanager
    def mixed_batch(self, names: list[str]) -> Iterator[dict]:
        """Set the model up for a batch whose row i uses adapter names[i]; yields extra generate() kwargs."""
        self._batch_names = names  # for the decisions: which rows are theirs
        try:
            if not self.adapters and self.reward is None:
                yield {}
            elif self.stacked and supported(self.model):
                with stacked_lora(self.model, names):
                    yield {}
            else:
                yield {"adapter_names": names}  # PEFT's own mixed-adapter batch
        finally:
            self._batch_names = None

    def decided(self, names: list[str]) -> list[tuple[bool, float] | None]:
        """On the model thread, after a mixed batch: per row, whether its adapter's decision chose to refuse, and
        the probe's score; None for rows whose adapter has no decision or whose prompt had no chat turn."""
        out = []
        for row, name in enumerate(names):
            gate = self.decisions.get(name)
            scores = gate.last_scores if gate is not None else None
            score = float(scores[row]) if scores is not None and row < len(scores) else math.nan
            out.append(None if math.isnan(score) else (score > gate.decision.threshold, score))
        return out

    def _rows_using(self, name: str):
        """Which rows of a batch of n use adapter `name`: those mixed_batch gave it, or outside a mixed batch all of
        them while it is PEFT's active adapter and adapters are not disabled (scoring with set_adapter)."""
        layers = find_decoder(self.base).layers  # found once: PEFT wraps the linear layers inside, never these

        def rows(n: int) -> torch.Tensor:
            names = self._batch_names
            if names is not None:  # a batch of another size is not the one mixed_batch was given: leave it alone
                return torch.tensor([row == name for row in names]) if len(names) == n else torch.zeros(n, dtype=bool)
            disabled = any(getattr(layer.mlp.down_proj, "disable_adapters", False) for layer in layers)
            active = name in getattr(self.model, "active_adapters", ())
            return torch.full((n,), active and not disabled)

        return rows
