"""A refuse-or-answer decision taken once per chat turn and held while the answer opens: `train decision`'s output.

Why (adapters/BUILDS.md, the last points of "Why the decision rounds stall"): a probe on the MLP activations of a
middle layer tells held-out harmful requests from harmless look-alikes well, but a LoRA rank writes in proportion to
what it reads at every token, so a reading near zero becomes a weak push either way. Here the probe is read once, at
the token that ends the turn header (`<start_of_turn>model\\n`); its sign (score above the threshold: refuse) is
then held, as +b or -b added to the output of a few layers' `down_proj`, for a window of positions from that token
on: a short one for a refusal (long ones made Japanese refusals loop), a longer one for an answer.

An adapter version that carries one holds its parent's LoRA as it was, plus DECISION_FILE (safetensors):
    probe (d_ff), threshold (), read_layer (), windows (2: refuse, answer), write.<layer> (d_model) per layer;
    metadata turn_start: the text whose last token is where the probe reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from playground.errors import AdapterError

DECISION_FILE = "decision.safetensors"
TURN_START = "<start_of_turn>model\n"  # Gemma's header of the model's turn; the answer starts after it


@dataclass
class Decision:
    probe: torch.Tensor  # a: the score is a·x, x the read layer's down_proj input (the MLP's inner activations)
    threshold: float  # score above it: refuse
    read_layer: int
    writes: dict[int, torch.Tensor]  # layer -> b, added (times the sign) to that layer's down_proj output
    windows: tuple[int, int]  # positions after the turn start that a refusing / answering sign is held for
    turn_start: str = TURN_START


def find_decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder's layers, in a plain model or one PEFT wraps (PEFT replaces linear layers, never these)."""
    decoder = next((m for m in model.modules() if hasattr(m, "embed_tokens") and hasattr(m, "layers")), None)
    if decoder is None:
        raise AdapterError(f"{type(model).__name__} has no decoder with layers: a decision needs one")
    return decoder


def base_linear(module: torch.nn.Module) -> torch.nn.Module:
    """The frozen linear layer inside a LoRA wrapper: it stays when adapters come and go, and so do its hooks."""
    return module.get_base_layer() if hasattr(module, "get_base_layer") else module


def save_decision(decision: Decision, folder: Path) -> None:
    from safetensors.torch import save_file

    tensors = {"probe": decision.probe.detach().float().contiguous(),
               "threshold": torch.tensor(float(decision.threshold)),
               "read_layer": torch.tensor(decision.read_layer),
               "windows": torch.tensor(list(decision.windows))}
    tensors.update({f"write.{layer}": b.detach().float().contiguous() for layer, b in decision.writes.items()})
    save_file(tensors, str(Path(folder) / DECISION_FILE), metadata={"turn_start": decision.turn_start})


def read_decision(folder: Path, model: torch.nn.Module) -> Decision | None:
    """The decision in `folder` (None when it has none), checked against `model`; AdapterError names what is
    wrong with a damaged or mismatched one."""
    from safetensors import safe_open

    path = Path(folder) / DECISION_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as stored:
            tensors = {key: stored.get_tensor(key) for key in stored.keys()}
            turn_start = (stored.metadata() or {}).get("turn_start", TURN_START)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise AdapterError(f"{path} could not be read ({exc}); the file is damaged or incomplete") from None
    missing = [key for key in ("probe", "threshold", "read_layer", "windows") if key not in tensors]
    writes = {key: tensor for key, tensor in tensors.items() if key.startswith("write.")}
    if missing or not writes:
        raise AdapterError(f"{path} lacks {', '.join(missing) or 'write.<layer>'}: it was not written by "
                           "`train decision`; train the decision again, or remove the file to load the LoRA alone")
    if not all(key.removeprefix("write.").isdigit() for key in writes):
        raise AdapterError(f"{path}: {sorted(writes)} must be write.<layer number>; the file was not written by "
                           "`train decision`")
    layers = find_decoder(model).layers
    read_layer = int(tensors["read_layer"])
    write_layers = sorted(int(key.removeprefix("write.")) for key in writes)
    out_of_range = [n for n in (read_layer, *write_layers) if not 0 <= n < len(layers)]
    if out_of_range:
        raise AdapterError(f"{path} uses layer {out_of_range[0]}, but this base has layers 0 to {len(layers) - 1}: "
                           "the decision was made for another base model")
    if write_layers[0] < read_layer:
        raise AdapterError(f"{path} writes at layer {write_layers[0]}, before the layer it reads ({read_layer}): "
                           "the sign isn't known there yet; train the decision again")
    sizes = {"probe": base_linear(layers[read_layer].mlp.down_proj).in_features,
             **{f"write.{n}": base_linear(layers[n].mlp.down_proj).out_features for n in write_layers}}
    for key, size in sizes.items():
        if tuple(tensors[key].shape) != (size,):
            raise AdapterError(f"{path}: {key} has shape {list(tensors[key].shape)}, but this base needs [{size}]: "
                               "the decision was made for another base model")
    windows = tensors["windows"]
    if tuple(windows.shape) != (2,) or bool((windows < 0).any()):
        raise AdapterError(f"{path}: windows is {windows.tolist()}; it must be two counts of positions, at least 0")
    if not all(bool(torch.isfinite(tensors[key]).all()) for key in ("probe", "threshold", *writes)):
        raise AdapterError(f"{path} holds values that are not finite numbers; the training run diverged")
    return Decision(tensors["probe"].float(), float(tensors["threshold"]), read_layer,
                    {n: tensors[f"write.{n}"].float() for n in write_layers},
                    (int(windows[0]), int(windows[1])), turn_start)


class DecisionGate:
    """Hooks that apply one Decision to the rows of a batch that `rows(batch_size)` picks (a bool tensor).

    Per forward pass: a pre-hook on the decoder finds the turn starts in input_ids; a hook on the read layer's
    down_proj scores them and works out, per position, the sign held since the latest turn start and how far
    back it is; hooks on the written layers' down_proj add sign * b where the window still holds. A pass that
    continues a cache (a decoding step) carries each row's sign and distance on from the pass before.
    `force` (training) replaces the probe's sign at every turn start; `enabled` switches the gate off.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, decision: Decision,
                 rows: Callable[[int], torch.Tensor] | None = None):
        self.decision = decision
        self.rows = rows
        self.enabled = True
        self.force: float | None = None
        # (B,) the score at each row's latest turn start in the latest prompt (NaN for a row without one)
        self.last_scores: torch.Tensor | None = None
        ids = tokenizer(decision.turn_start, add_special_tokens=False)["input_ids"]
        if not ids:
            raise AdapterError(f"the turn start {decision.turn_start!r} gives no tokens with this tokenizer")
        self.pattern = torch.tensor(ids)
        decoder = find_decoder(model)
        layers = decoder.layers
        self._starts = self._held = self._applied = None
        self._hooks = [decoder.register_forward_pre_hook(self._find_starts, with_kwargs=True),
                       base_linear(layers[decision.read_layer].mlp.down_proj).register_forward_hook(self._read)]
        self._hooks += [base_linear(layers[n].mlp.down_proj).register_forward_hook(self._writer(n))
                        for n in decision.writes]

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()

    def _find_starts(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self._applied = None
        if ids is None or not self.enabled:
            self._starts = self._held = None
            return
        cache = kwargs.get("past_key_values")
        continuing = (cache is not None and cache.get_seq_length() > 0 and self._held is not None
                      and self._held[0].shape[0] == ids.shape[0])
        if not continuing:
            self._held = self.last_scores = None
        k = len(self.pattern)
        starts = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
        if ids.shape[1] >= k:
            starts[:, k - 1:] = (ids.unfold(1, k, 1) == self.pattern.to(ids.device)).all(-1)
        self._starts = starts

    def _read(self, module, args, out) -> None:
        if self._starts is None or self._starts.shape != args[0].shape[:2]:
            return
        x, starts = args[0], self._starts
        batch, length = starts.shape
        with torch.no_grad():
            scores = x.float() @ self.decision.probe.to(x.device)  # (B, T)
        if self.force is not None:
            signs = torch.full_like(scores, float(self.force))
        else:
            signs = torch.where(scores > self.decision.threshold, 1.0, -1.0)
        positions = torch.arange(length, device=x.device).expand(batch, length)
        latest = torch.where(starts, positions, -1).cummax(1).values  # (B, T): the latest turn start, or -1
        if self._held is None:
            before_sign = torch.zeros(batch, device=x.device)
            before_distance = torch.full((batch,), -1, device=x.device)
        else:
            before_sign, before_distance = self._held
        seen = latest >= 0
        sign = torch.where(seen, signs.gather(1, latest.clamp(min=0)), before_sign[:, None])
        # a row with no turn start yet in this pass counts on from the pass before (-1: none ever)
        carried = torch.where(before_distance[:, None] >= 0, before_distance[:, None] + 1 + positions, -1)
        distance = torch.where(seen, positions - latest, carried)
        self._held = (sign[:, -1], distance[:, -1])
        refuse, answer = self.decision.windows
        held = ((sign > 0) & (distance <= refuse)) | ((sign < 0) & (distance <= answer))
        applied = torch.where(held & (distance >= 0), sign, 0.0)
        if self.rows is not None:
            applied = applied * self.rows(batch).to(x.device)[:, None]
        self._applied = applied
        if starts.any():
            at_latest = scores.gather(1, latest[:, -1:].clamp(min=0))[:, 0]
            self.last_scores = torch.where(latest[:, -1] >= 0, at_latest, float("nan"))

    def _writer(self, layer: int):
        def write(module, args, out):
            applied = self._applied
            if applied is None or applied.shape != out.shape[:2]:
                return out
            return out + (applied[..., None] * self.decision.writes[layer].to(out.device)).to(out.dtype)

        return write
