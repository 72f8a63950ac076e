"""Train tab: press Retrain, watch the curves, and the new version joins the Compare columns at once (a reward
model instead starts scoring the answers there)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from playground.config import Variant
from playground.errors import PlaygroundError
from playground.models.reward import is_reward_model
from playground.training.jobs import JobSpec, Jobs
from playground.ui.access import Access
from playground.ui.live import LiveLineup
from playground.ui.loading import ModelLoading

FRESH = "(fresh LoRA on the base)"


@dataclass(frozen=True)
class TrainingPlace:
    """Where runs read the base from and write versions to."""

    db: Path
    source: str
    dtype: str
    cache_dir: Path
    adapters_root: Path = Path("adapters")


def curves(run: dict | None) -> pd.DataFrame | None:
    rows = []
    for step in (run or {}).get("metrics", []):
        for key, series in (("loss", "loss"), ("rewards/margins", "reward margin"), ("margin", "reward margin"),
                            ("rewards/accuracies", "accuracy"), ("accuracy", "accuracy")):
            if key in step:
                rows.append({"step": step["step"], "value": step[key], "series": series})
    if not rows:  # an empty frame would fix the plot's series to none at all
        return None
    return pd.DataFrame(rows).astype({"step": int, "value": float, "series": str})


def describe(run: dict) -> str:
    text = f"**Run #{run['id']}** — {run['status']}: {run['message'] or ''}"
    if run["status"] == "done" and run["folder"]:
        card = Path(run["folder"]) / "card.json"
        if card.is_file():
            import json

            data = json.loads(card.read_text())
            metrics = data["metrics"]
            for key, title in (("held_out_preference_accuracy", "Held-out preference accuracy"),
                               ("held_out_reward_accuracy", "Held-out reward-model accuracy"),
                               ("held_out_rating_accuracy", "Held-out rating accuracy"),
                               ("held_out_loss", "Held-out loss")):
                if f"{key}_after" in metrics:
                    text += f"\n\n{title}: {metrics[f'{key}_before']} → {metrics[f'{key}_after']}"
            if data["worse_than_before"]:
                text += "\n\n⚠️ **This version did worse on held-out data than its parent.** It is loaded for "\
                        "comparison; do not promote it without a closer look."
    return text


def train_tab(get_runtime: ModelLoading, live: LiveLineup, jobs: Jobs, place: TrainingPlace, access: Access,
              refresh_compare, compare_inputs, compare_outputs) -> None:
    """`refresh_compare(*compare_inputs) -> compare_outputs` shows a hot-loaded version in the Compare tab."""
    parents = [v for v in live.variants if v.adapter]
    with gr.Row():
        kind = gr.Radio([("DPO (preference pairs)", "dpo"), ("KTO (thumbs up and down)", "kto"),
                         ("SFT (ideal and upvoted answers)", "sft"), ("Reward model (pairs; best-of-n)", "reward")],
                        value="dpo", label="Method", scale=2)
        parent = gr.Dropdown([FRESH, *[v.name for v in parents]], value=parents[0].name if parents else FRESH,
                             label="Continue from (the reference policy)", scale=2)
        name = gr.Textbox("rlhf", label="New adapter name (versions: adapters/NAME/vN)", max_lines=1, scale=2)
        steps = gr.Slider(1, 400, value=40, step=1, label="steps", scale=1)
        lr = gr.Number(5e-5, label="learning rate", scale=1)
        beta = gr.Number(0.1, label="beta", scale=1)
        seed = gr.Checkbox(False, label="Mix in the project's own data (data/) / 同梱データも使う", scale=1)
    with gr.Row():
        password = gr.Textbox(label="Admin password / 管理者パスワード", type="password", max_lines=1,
                              visible=access.admin_needs_password, scale=2)
        start = gr.Button("Retrain / 再学習", variant="primary")
        cancel = gr.Button("Cancel / 中止", variant="stop")
    status = gr.Markdown("No run yet. / まだ学習していません。")
    plot = gr.LinePlot(None, x="step", y="value", color="series", label="training", height=320)
    poll = gr.Timer(1.0, active=False)

    def begin(method, parent_name, adapter_name, n_steps, rate, dpo_beta, with_seed, typed_password):
        access.require_admin(typed_password)
        folder = next((v.adapter for v in live.variants if v.name == parent_name), None)
        settings = {"steps": int(n_steps), "learning_rate": float(rate)}
        if method in ("dpo", "kto"):
            settings["beta"] = float(dpo_beta)
        spec = JobSpec(method, str(place.db), place.source, place.dtype, str(place.cache_dir), str(place.adapters_root),
                       adapter_name.strip() or "rlhf", str(folder) if folder else None, settings,
                       "feedback+seed" if with_seed else "feedback")
        try:
            run_id = jobs.start(spec)
        except PlaygroundError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(f"Training run #{run_id} started / 学習を開始しました")
        return describe(jobs.store.run(run_id)), curves(None), gr.Timer(active=True)

    def watch(*compare_state):
        run = jobs.wait(timeout=0)
        updates = [gr.skip()] * len(compare_outputs)
        if run["status"] == "running":
            return describe(run), curves(run), gr.Timer(active=True), *updates
        if run["status"] == "done" and is_reward_model(Path(run["folder"])):
            try:
                get_runtime().load_reward_model(Path(run["folder"]))
                gr.Info("The reward model is loaded: Compare shows each answer's score and offers best-of-n / "
                        "報酬モデルを読み込みました")
            except PlaygroundError as exc:
                gr.Warning(str(exc))
        elif run["status"] == "done":
            variant = Variant(f"{Path(run['folder']).parent.name}-v{run['version']}", Path(run["folder"]), "chat")
            if variant.name not in live.names():
                try:
                    get_runtime().load_adapter(variant.name, variant.adapter)  # hot-load: the base stays as it is
                    live.add(variant)
                    gr.Info(f"{variant.name} is loaded: choose it in Compare / 比較タブで選べます")
                except PlaygroundError as exc:
                    gr.Warning(str(exc))
                updates = refresh_compare(*compare_state)
        return describe(run), curves(run), gr.Timer(active=False), *updates

    def stop(typed_password):
        access.require_admin(typed_password)
        jobs.cancel()
        gr.Info("Cancelled: no version was published / 中止しました")

    start.click(begin, [kind, parent, name, steps, lr, beta, seed, password], [status, plot, poll], api_name="train")
    poll.tick(watch, compare_inputs, [status, plot, poll, *compare_outputs], api_name=False)
    cancel.click(stop, [password], api_name="cancel_training")
