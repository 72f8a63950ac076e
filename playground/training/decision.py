"""The refuse-or-answer decision, trained on top of a finished adapter by a probe read into it.

Why (adapters/BUILDS.md, "Why the decision rounds stall"): under the shipped rlhf, a logistic-regression probe on the
hidden state at a prompt's last token tells held-out harmful requests from harmless look-alikes well (AUC about
0.93 on dev), while the policy's own refusal opening barely does (0.80 in English, 0.53 in Japanese); preference
rounds moved its refusals as one piece, look-alikes with them. So this step adds one LoRA rank to a few layers'
`down_proj`, starts its A as such a probe (fit on the training prompts) and its B at zero, and trains only that
rank: towards the refusal opening on harmful requests and away from it on look-alikes, with DPO on helpful and
honest pairs and a little SFT so that the rest of the policy stays. The rank is then folded into the parent's
LoRA (`rank_pattern`): the new version is a plain PEFT adapter, loaded like any other.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from playground.errors import PlaygroundError
from playground.training.common import Progress, completion_logps, load_training_base
from playground.training.data import Example, Pair
from playground.training.publish import discard, publish, staging_folder
from playground.training.seed import Probe

# What a refusal opens with: the decision loss moves their log-probabilities, relative to the parent's
OPENINGS = {"en": ("I can't help with",),
            "ja": ("申し訳ありませんが、その方法はお伝えできません。", "その方法はお伝えできません。")}
MODULE = "down_proj"  # where the probe reads best (the MLP's inner activations) and writes into the residual


@dataclass(frozen=True)
class DecisionSettings:
    steps: int = 176  # about two passes over the 768 training prompts of data/, batch_size a step
    batch_size: int = 8  # prompts a step, half harmful requests, half look-alikes
    learning_rate: float = 4e-3  # only the added rank trains, from a probe: a rate far above LoRA's
    beta: float = 0.1  # as DPO's: how sharply the loss saturates in the log-probability ratio
    layers: tuple[int, ...] = (17,)  # decoder layers whose down_proj gets the rank
    harmful_weight_en: float = 2.0  # weight of a harmful request's loss against a look-alike's (1)
    harmful_weight_ja: float = 1.3
    sft_weight: float = 0.3  # a language-model loss on one written instruction example a step
    pairs_per_step: int = 2  # DPO on helpful and honest pairs, against the policy without the added rank
    pair_weight: float = 1.0
    # A second rank whose A reads the prompt's language (a probe fit on English against Japanese): its B can move
    # the refusal threshold of each language on its own, where one direction moves both together.
    language_offset: bool = False
    seed: int = 0


@dataclass(frozen=True)
class DecisionData:
    probes: list[Probe]  # harmful requests and look-alikes, to decide on
    pairs: list[Pair]  # helpful and honest preference pairs, to keep
    examples: list[Example]  # written instruction examples, to keep


class AddedRank:
    """`rank` ranks added to each chosen module's output (x A^T B^T), by forward hooks; `on` switches all off."""

    def __init__(self, modules: dict[str, torch.nn.Module], rank: int = 1):
        self.on = True
        self.weights = {}
        for name, module in modules.items():
            din, dout = module.base_layer.in_features, module.base_layer.out_features
            a, b = torch.nn.Parameter(torch.zeros(rank, din)), torch.nn.Parameter(torch.zeros(dout, rank))
            self.weights[name] = (module, a, b)
            module.register_forward_hook(lambda m, args, out, a=a, b=b: out + (args[0] @ a.T) @ b.T if self.on else out)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for _, a, b in self.weights.values() for p in (a, b)]


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


def fold(parent: Path, added: AddedRank, staged: Path) -> None:
    """Write parent's adapter with the added ranks appended to its LoRA in each module: rank r+k there, and alpha
    scaled with it, so that PEFT's scaling there (alpha / rank) stays what it was."""
    from safetensors.torch import load_file, save_file

    config = json.loads((parent / "adapter_config.json").read_text())
    ranks, alphas = dict(config.get("rank_pattern") or {}), dict(config.get("alpha_pattern") or {})
    weights = load_file(str(parent / "adapter_model.safetensors"))
    for name, (_, a, b) in added.weights.items():
        key = name.removeprefix("base_model.model.")
        lora_a, lora_b = weights[f"{name}.lora_A.weight"], weights[f"{name}.lora_B.weight"]
        rank = lora_a.shape[0]
        scaling = alphas.get(key, config["lora_alpha"]) / rank
        weights[f"{name}.lora_A.weight"] = torch.cat([lora_a.float(), a.detach()], 0).to(lora_a.dtype)
        weights[f"{name}.lora_B.weight"] = torch.cat([lora_b.float(), b.detach() / scaling], 1).to(lora_b.dtype)
        ranks[key] = rank + a.shape[0]
        alphas[key] = scaling * ranks[key]
    save_file(weights, str(staged / "adapter_model.safetensors"), metadata={"format": "pt"})
    (staged / "adapter_config.json").write_text(json.dumps({**config, "rank_pattern": ranks, "alpha_pattern": alphas},
                                                           indent=2))


def check_parent(parent: Path | None) -> None:
    if parent is None or not (parent / "adapter_model.safetensors").is_file():
        raise PlaygroundError(f"train decision needs --from ADAPTER, a finished adapter folder with "
                              f"adapter_model.safetensors (got {parent}); e.g. --from adapters/rlhf/v1")
    config = json.loads((parent / "adapter_config.json").read_text())
    if config.get("use_rslora") or config.get("use_dora"):
        raise PlaygroundError(f"{parent}: rsLoRA and DoRA adapters can't take an added rank; use a plain LoRA")


def added_rank(model, parent: Path, settings: DecisionSettings) -> AddedRank:
    """The added rank (two with language_offset) on the chosen layers' down_proj, each of which the parent's LoRA
    must cover."""
    layers = model.base_model.model.model.layers
    if any(not 0 <= i < len(layers) for i in settings.layers):
        raise PlaygroundError(f"layers {list(settings.layers)}: this model has layers 0 to {len(layers) - 1}")
    modules = {f"base_model.model.model.layers.{i}.mlp.{MODULE}": getattr(layers[i].mlp, MODULE)
               for i in settings.layers}
    if any(not hasattr(m, "base_layer") for m in modules.values()):
        raise PlaygroundError(f"{parent} has no LoRA on the {MODULE} of each of layers {list(settings.layers)}; "
                              f"choose layers it has one on, or train its parent on all linear layers")
    return AddedRank(modules, 2 if settings.language_offset else 1)


def start_from_probes(model, tokenizer, added: AddedRank, probes: list[Probe]) -> None:
    """Each module's A: the probe for "harmful" (and, as a second rank, for "Japanese") fit on that module's input
    at the last token of each prompt. B stays zero, so the policy is still the parent's."""
    captured = {}
    hooks = [m.register_forward_hook(lambda m, args, out, n=n: captured.__setitem__(n, args[0][0, -1]))
             for n, (m, _, _) in added.weights.items()]
    features = {n: [] for n in added.weights}
    with torch.no_grad():
        for probe in probes:
            model(input_ids=torch.tensor([tokenizer(probe.prompt)["input_ids"]]), logits_to_keep=1)
            for n in added.weights:
                features[n].append(captured[n])
        for hook in hooks:
            hook.remove()
        labels = [torch.tensor([float(p.harmful) for p in probes]),
                  torch.tensor([float(p.lang == "ja") for p in probes])]
        for n, (_, a, _) in added.weights.items():
            for row in range(a.shape[0]):
                a[row] = fit_probe(torch.stack(features[n]), labels[row])


def decision_loss(model, tokenizer, batch: list[Probe], reference: dict, settings: DecisionSettings) -> float:
    """DPO's logistic loss on the refusal openings' log-probability ratio to the parent's: up on harmful requests
    (weighted per language), down on look-alikes. Backpropagated; returns its value."""
    weight = {"en": settings.harmful_weight_en, "ja": settings.harmful_weight_ja}
    total = 0.0
    for probe in batch:
        sign, w = (1.0, weight[probe.lang]) if probe.harmful else (-1.0, 1.0)
        for text in OPENINGS[probe.lang]:
            ratio = opening_logp(model, tokenizer, probe.prompt, text) - reference[(probe.prompt, text)]
            loss = -torch.nn.functional.logsigmoid(sign * settings.beta * ratio) * w / len(batch)
            loss.backward()
            total += float(loss.detach())
    return total


def keeping_pairs_loss(model, tokenizer, added: AddedRank, pairs: list[Pair], settings: DecisionSettings,
                       references: dict[Pair, float]) -> float:
    """DPO on helpful and honest pairs, the reference being the policy without the added rank: what the rank may
    not unlearn. That reference's margins are fixed, so each is computed once, into `references`. Backpropagated;
    returns its value."""
    total = 0.0
    for pair in pairs:
        if pair not in references:
            with torch.no_grad():
                added.on = False
                references[pair] = float(opening_logp(model, tokenizer, pair.prompt, pair.chosen)
                                         - opening_logp(model, tokenizer, pair.prompt, pair.rejected))
                added.on = True
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
    """Train the added rank on train.probes (harmful requests and look-alikes), with DPO on train.pairs and SFT
    on train.examples, measure on `held_out`, and publish adapters_root/name/vN: the parent with that rank folded
    in. Training runs in float32 whatever `dtype` (the loss compares log-probabilities with the parent's to a
    fraction of a nat, below bfloat16's rounding); the folded adapter keeps the parent's dtype."""
    from peft import PeftModel

    check_parent(parent)
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    kinds = {True: [p for p in train.probes if p.harmful], False: [p for p in train.probes if not p.harmful]}
    if not kinds[True] or not kinds[False]:
        raise PlaygroundError(f"train decision needs harmful requests and look-alikes; got {len(kinds[True])} and "
                              f"{len(kinds[False])} training prompts")
    if settings.language_offset and {p.lang for p in train.probes} != set(OPENINGS):
        raise PlaygroundError("language_offset needs training prompts in both English and Japanese")

    base = load_training_base(source, "float32", cache_dir, progress)
    tokenizer = base.tokenizer
    model = PeftModel.from_pretrained(base.model, str(parent))
    model.requires_grad_(False)
    model.eval()  # no dropout: the parent is fixed, only the added rank learns
    added = added_rank(model, parent, settings)
    before = refusal_auc(model, tokenizer, held_out)  # the added rank is zero: the parent's
    progress({"message": f"held-out refusal AUC before: {before}"})
    progress({"message": f"fitting the probe on {len(train.probes)} prompts' last token"})
    start_from_probes(model, tokenizer, added, train.probes)
    progress({"message": "the parent's log-probabilities of the refusal openings"})
    with torch.no_grad():
        reference = {(p.prompt, text): float(opening_logp(model, tokenizer, p.prompt, text))
                     for p in train.probes for text in OPENINGS[p.lang]}

    optimizer = torch.optim.AdamW(added.parameters(), lr=settings.learning_rate, weight_decay=0.0)
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
            decision = decision_loss(model, tokenizer, take(True) + take(False), reference, settings)
            sft = 0.0
            if settings.sft_weight and train.examples:
                example = rng.choice(train.examples)
                loss = -opening_logp(model, tokenizer, example.prompt, example.completion, mean=True)
                (loss * settings.sft_weight).backward()
                sft = float(loss.detach())
            pairs = rng.sample(train.pairs, min(settings.pairs_per_step, len(train.pairs)))
            kept = (keeping_pairs_loss(model, tokenizer, added, pairs, settings, pair_references)
                    if settings.pair_weight else 0.0)
            optimizer.step()
            schedule.step()
            progress({"step": step, "of": settings.steps, "decision_loss": round(decision, 4),
                      "dpo_loss": round(kept, 4), "sft_loss": round(sft, 4)})

        after = refusal_auc(model, tokenizer, held_out)
        progress({"message": f"held-out refusal AUC after: {after}"})
        fold(parent, added, staged)
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
            # AUC of log p(refusal opening), harmful requests against look-alikes, on the held-out prompts
            "metrics": {"held_out_refusal_auc_before": before, "held_out_refusal_auc_after": after},
            "worse_than_before": any(after[k] is not None and before[k] is not None and after[k] < before[k]
                                     for k in after),
        }
        return publish(staged, adapters_root, name, card)
    except BaseException:
        discard(staged)
        raise
