"""`train decision`: when to refuse, learnt as a decision read once per chat turn on top of a finished adapter.

Why (adapters/BUILDS.md, "Why the decision rounds stall"): under the shipped rlhf, a logistic-regression probe on
the hidden state at a prompt's last token tells held-out harmful requests from harmless look-alikes well (AUC about
0.93 on dev), while the policy's own refusal opening barely does; and a LoRA rank started from that probe writes in
proportion to its reading at every token, so a reading near zero becomes a weak push. So this step fits the probe on
the parent's MLP activations at one layer, keeps the parent's LoRA as it is, and trains only what the held sign
writes (models/decision_gate.py): b per written layer, the sign set to each training prompt's label, towards the
refusal opening on harmful requests and away from it on look-alikes, with DPO on helpful and honest pairs and a
little SFT so that the rest of the policy stays.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from playground.errors import PlaygroundError
from playground.models.decision_gate import (
    DECISION_FILE, Decision, DecisionGate, base_linear, find_decoder, save_decision,
)
from playground.training.common import Progress, completion_logps, load_training_base
from playground.training.data import Example, Pair
from playground.training.publish import discard, publish, staging_folder
from playground.training.seed import Probe

# What a refusal opens with: the decision loss moves their log-probabilities, relative to the parent's
OPENINGS = {"en": ("I can't help with",),
            "ja": ("申し訳ありませんが、その方法はお伝えできません。", "その方法はお伝えできません。")}
WHOLE_ANSWER = 2**31 - 1  # a window no answer reaches


@dataclass(frozen=True)
class DecisionSettings:
    steps: int = 176  # about two passes over the 768 training prompts of data/, batch_size a step
    batch_size: int = 8  # prompts a step, half harmful requests, half look-alikes
    learning_rate: float = 4e-3  # only the written vectors train, from zero
    beta: float = 0.1  # as DPO's: how sharply the loss saturates in the log-probability ratio
    read_layer: int = 7  # the decoder layer whose down_proj input the probe reads (best separated on dev)
    layers: tuple[int, ...] = (7, 17)  # decoder layers whose down_proj output gets the held sign times b
    # Positions after the turn start a refusing / answering sign is held for when the version answers (chosen on dev:
    # a refusal's opening needs few, and held over a whole answer, Japanese refusals looped; an answer's first
    # sentence a few more). Training holds the sign over the whole answer: trained with these windows, the build
    # declined 7 of dev's 31 look-alikes against 5 (adapters/BUILDS.md).
    windows: tuple[int, int] = (16, 48)
    harmful_weight_en: float = 1.0  # weight of a harmful request's loss against a look-alike's (1)
    harmful_weight_ja: float = 1.0
    sft_weight: float = 0.3  # a language-model loss on one written instruction example a step
    pairs_per_step: int = 2  # DPO on helpful and honest pairs, against the parent without the decision
    pair_weight: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class DecisionData:
    probes: list[Probe]  # harmful requests and look-alikes, to decide on
    pairs: list[Pair]  # helpful and honest preference pairs, to keep
    examples: list[Example]  # written instruction examples, to keep


def fit_probe(features: torch.Tensor, harmful: torch.Tensor) -> torch.Tensor:
    """A direction `a` whose a·x is a logistic regression's logit for "harmful" (L2, standardized features), with
    its constant folded in: the features' mean m is nearly the same at every prompt's end, so c·m/|m|² stands in
    for the constant c. Scaled to a logit of sd 1 over the training prompts."""
    mean, sd = features.mean(0), features.std(0) + 1e-3
    w = torch.zeros(features.shape[1], requires_grad=True)
    c = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, c], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = ((features - mean) / sd) @ w + c
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, harmful) + 0.01 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    a = (w / sd).detach()
    a = a + (float(c.detach()) - float(a @ mean)) * mean / (mean @ mean)
    return a / float((features @ a).std())


def opening_logp(model, tokenizer, prompt: str, text: str, mean: bool = False) -> torch.Tensor:
    """log p(text | prompt), summed (or averaged) over text's tokens, with gradients."""
    logps = completion_logps(model, tokenizer, prompt, text)
    return logps.mean() if mean else logps.sum()


def auc(positive: list[float], negative: list[float]) -> float | None:
    """Chance that a random positive scores above a random negative (ties half)."""
    if not positive or not negative:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return round(wins / (len(positive) * len(negative)), 4)


def refusal_auc(model, tokenizer, probes: list[Probe]) -> dict[str, float | None]:
    """Per language, how well log p(refusal opening) tells the harmful requests from the look-alikes."""
    with torch.no_grad():
        scores = [(p, float(opening_logp(model, tokenizer, p.prompt, OPENINGS[p.lang][0]))) for p in probes]
    return {lang: auc([s for p, s in scores if p.lang == lang and p.harmful],
                      [s for p, s in scores if p.lang == lang and not p.harmful]) for lang in OPENINGS}


def check_parent(parent: Path | None) -> None:
    if parent is None or not (parent / "adapter_model.safetensors").is_file():
        raise PlaygroundError(f"train decision needs --from ADAPTER, a finished adapter folder with "
                              f"adapter_model.safetensors (got {parent}); e.g. --from adapters/rlhf/v1")
    if (parent / DECISION_FILE).is_file():
        raise PlaygroundError(f"{parent} already carries a decision ({DECISION_FILE}); train from the adapter it "
                              "was trained on (its card's parent)")


def check_layers(model, settings: DecisionSettings) -> None:
    count = len(find_decoder(model).layers)
    if any(not 0 <= n < count for n in (settings.read_layer, *settings.layers)) or not settings.layers:
        raise PlaygroundError(f"layers {list(settings.layers)}, read at {settings.read_layer}: this model has "
                              f"layers 0 to {count - 1}")
    if min(settings.layers) < settings.read_layer:
        raise PlaygroundError(f"layers {list(settings.layers)}: the decision can only write at the layer it reads "
                              f"({settings.read_layer}) or after it")


def fit_decision_probe(model, tokenizer, probes: list[Probe], layer: int) -> torch.Tensor:
    """The probe for "harmful", fit on `layer`'s down_proj input at the last token of each prompt (where the
    turn header ends, and the gate reads)."""
    module = find_decoder(model).layers[layer].mlp.down_proj
    features = []
    hook = module.register_forward_hook(lambda m, args, out: features.append(args[0][0, -1].detach().float()))
    try:
        with torch.no_grad():
            for probe in probes:
                model(input_ids=torch.tensor([tokenizer(probe.prompt)["input_ids"]]), logits_to_keep=1)
    finally:
        hook.remove()
    return fit_probe(torch.stack(features), torch.tensor([float(p.harmful) for p in probes]))


def probe_verdicts(gate: DecisionGate, model, tokenizer, probes: list[Probe]) -> dict[str, dict[str, float | None]]:
    """Per language, the share of harmful requests and of look-alikes the probe sends to a refusal."""
    refused = []
    with torch.no_grad():
        for probe in probes:
            model(input_ids=torch.tensor([tokenizer(probe.prompt)["input_ids"]]), logits_to_keep=1)
            refused.append(float(gate.last_scores[0]) > gate.decision.threshold)

    def share(lang: str, harmful: bool) -> float | None:
        flags = [r for r, p in zip(refused, probes) if p.lang == lang and p.harmful == harmful]
        return round(sum(flags) / len(flags), 4) if flags else None

    return {lang: {"harmful_refused": share(lang, True), "lookalikes_refused": share(lang, False)}
            for lang in OPENINGS}


def decision_loss(model, tokenizer, gate: DecisionGate, batch: list[Probe], reference: dict,
                  settings: DecisionSettings) -> float:
    """DPO's logistic loss on the refusal openings' log-probability ratio to the parent's, with the gate's sign set
    to the prompt's label: up on harmful requests (weighted per language), down on look-alikes. Backpropagated;
    returns its value."""
    weight = {"en": settings.harmful_weight_en, "ja": settings.harmful_weight_ja}
    total = 0.0
    try:
        for probe in batch:
            sign, w = (1.0, weight[probe.lang]) if probe.harmful else (-1.0, 1.0)
            gate.force = sign
            for text in OPENINGS[probe.lang]:
                ratio = opening_logp(model, tokenizer, probe.prompt, text) - reference[(probe.prompt, text)]
                loss = -torch.nn.functional.logsigmoid(sign * settings.beta * ratio) * w / len(batch)
                loss.backward()
                total += float(loss.detach())
    finally:
        gate.force = None
    return total


def keeping_pairs_loss(model, tokenizer, gate: DecisionGate, pairs: list[Pair], settings: DecisionSettings,
                       references: dict[Pair, float]) -> float:
    """DPO on helpful and honest pairs, the reference being the parent without the decision: what the decision may
    not unlearn. That reference's margins are fixed, so each is computed once, into `references`. Backpropagated;
    returns its value."""
    total = 0.0
    for pair in pairs:
        if pair not in references:
            with torch.no_grad():
                gate.enabled = False
                references[pair] = float(opening_logp(model, tokenizer, pair.prompt, pair.chosen)
                                         - opening_logp(model, tokenizer, pair.prompt, pair.rejected))
                gate.enabled = True
        margin = (opening_logp(model, tokenizer, pair.prompt, pair.chosen)
                  - opening_logp(model, tokenizer, pair.prompt, pair.rejected) - references[pair])
        loss = -torch.nn.functional.logsigmoid(settings.beta * margin) * settings.pair_weight / len(pairs)
        loss.backward()
        total += float(loss.detach())
    return total


def train_decision(
    source: str,
    dtype: str,
    cache_dir: Path,
    train: DecisionData,
    held_out: list[Probe],
    adapters_root: Path,
    name: str,
    parent: Path | None,
    settings: DecisionSettings = DecisionSettings(),
    progress: Progress = lambda update: None,
) -> Path:
    """Fit the probe on train.probes, train what the held sign writes on them (with DPO on train.pairs and SFT on
    train.examples), measure on `held_out`, and publish adapters_root/name/vN: the parent's LoRA as it was, plus
    the decision. Training runs in float32 whatever `dtype` (the loss compares log-probabilities with the parent's
    to a fraction of a nat, below bfloat16's rounding)."""
    from peft import PeftModel

    check_parent(parent)
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    kinds = {True: [p for p in train.probes if p.harmful], False: [p for p in train.probes if not p.harmful]}
    if not kinds[True] or not kinds[False]:
        raise PlaygroundError(f"train decision needs harmful requests and look-alikes; got {len(kinds[True])} and "
                              f"{len(kinds[False])} training prompts")

    base = load_training_base(source, "float32", cache_dir, progress)
    tokenizer = base.tokenizer
    model = PeftModel.from_pretrained(base.model, str(parent))
    model.requires_grad_(False)
    model.eval()  # no dropout: the parent is fixed, only the written vectors learn
    check_layers(model, settings)
    before = refusal_auc(model, tokenizer, held_out)
    progress({"message": f"held-out refusal AUC before: {before}"})
    progress({"message": f"fitting the probe on {len(train.probes)} prompts' last token, layer {settings.read_layer}"})
    probe = fit_decision_probe(model, tokenizer, train.probes, settings.read_layer)
    progress({"message": "the parent's log-probabilities of the refusal openings"})
    with torch.no_grad():
        reference = {(p.prompt, text): float(opening_logp(model, tokenizer, p.prompt, text))
                     for p in train.probes for text in OPENINGS[p.lang]}
    layers = find_decoder(model).layers
    writes = {n: torch.nn.Parameter(torch.zeros(base_linear(layers[n].mlp.down_proj).out_features))
              for n in settings.layers}
    decision = Decision(probe, 0.0, settings.read_layer, writes, (WHOLE_ANSWER, WHOLE_ANSWER))
    gate = DecisionGate(model, tokenizer, decision)

    optimizer = torch.optim.AdamW(list(writes.values()), lr=settings.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / settings.steps)
    queues = {True: [], False: []}
    pair_references = {}

    def take(kind: bool) -> list[Probe]:
        """The next half batch of one kind, from a list reshuffled each time it is used up."""
        out = []
        while len(out) < settings.batch_size // 2:
            queues[kind] = queues[kind] or rng.sample(kinds[kind], len(kinds[kind]))
            out.append(queues[kind].pop())
        return out

    staged = staging_folder(adapters_root, name)
    try:
        for step in range(1, settings.steps + 1):
            optimizer.zero_grad()
            decided = decision_loss(model, tokenizer, gate, take(True) + take(False), reference, settings)
            sft = 0.0
            if settings.sft_weight and train.examples:
                example = rng.choice(train.examples)
                loss = -opening_logp(model, tokenizer, example.prompt, example.completion, mean=True)
                (loss * settings.sft_weight).backward()
                sft = float(loss.detach())
            pairs = rng.sample(train.pairs, min(settings.pairs_per_step, len(train.pairs)))
            kept = (keeping_pairs_loss(model, tokenizer, gate, pairs, settings, pair_references)
                    if settings.pair_weight else 0.0)
            optimizer.step()
            schedule.step()
            progress({"step": step, "of": settings.steps, "decision_loss": round(decided, 4),
                      "dpo_loss": round(kept, 4), "sft_loss": round(sft, 4)})

        after = refusal_auc(model, tokenizer, held_out)
        verdicts = probe_verdicts(gate, model, tokenizer, held_out)
        progress({"message": f"held-out refusal AUC after: {after}; the probe's verdicts: {verdicts}"})
        for file in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copy2(parent / file, staged / file)
        save_decision(replace(decision, windows=settings.windows), staged)
        data = [[asdict(item) for item in items] for items in (train.probes, train.pairs, train.examples)]
        card = {
            "kind": "decision",
            "base_model": base.model_id,
            "base_file": base.origin,
            "parent": str(parent),
            "data_hash": hashlib.sha256(json.dumps(data).encode()).hexdigest(),
            "prompts": {"train": len(train.probes), "held_out": len(held_out), "pairs": len(train.pairs),
                        "examples": len(train.examples)},
            "hyperparameters": asdict(settings),
            "compute_dtype": "float32",
            # AUC of log p(refusal opening), harmful requests against look-alikes, on the held-out prompts; and
            # the shares of each the probe sends to a refusal
            "metrics": {"held_out_refusal_auc_before": before, "held_out_refusal_auc_after": after,
                        "held_out_probe": verdicts},
            "worse_than_before": any(after[k] is not None and before[k] is not None and after[k] < before[k]
                                     for k in after),
        }
        return publish(staged, adapters_root, name, card)
    except BaseException:
        discard(staged)
        raise
