"""Compare tab: one prompt streams into every chosen column at once, from a single event; thumbs and ideal answers."""

from __future__ import annotations

import threading

import gradio as gr

from playground.config import Variant
from playground.errors import FeedbackError, GenerationError, PlaygroundError
from playground.feedback import FeedbackStore
from playground.models.generation import (
    SamplingSettings, model_input_text, pick_best, sampled_for_best_of_n, stream_side_by_side,
)
from playground.prompting.formats import render_gemma_chat
from playground.prompting.inputs import clean_message, fit_context
from playground.prompting.banks import Bank
from playground.prompting.modes import MODE_TITLES, MODES, PLAIN_Q, PromptSpec, build_prompt
from playground.recording import record_answers
from playground.ui.access import participant
from playground.ui.i18n import t
from playground.ui.limits import RateLimit
from playground.ui.live import LiveLineup
from playground.ui.loading import ModelLoading
from playground.ui.messages import answer_ordinal, conversation, displayed, for_display

MAX_COLUMNS = 4


class Sessions:
    """Per browser session: its row in the sessions table, and the flag that Stop sets."""

    def __init__(self, store: FeedbackStore | None, votes: RateLimit | None = None):
        self.store = store
        self.ids: dict[str, str] = {}
        self.stop_flags: dict[str, threading.Event] = {}
        self.votes = votes or RateLimit()

    def count_vote(self, request: gr.Request | None, who: str | None) -> None:
        """Votes and corrections are rate-limited per participant (per browser session when nameless)."""
        self.votes.check(who or getattr(request, "session_hash", None) or "anonymous")

    def session_id(self, request: gr.Request, participant: str) -> str | None:
        if self.store is None:
            return None
        if request.session_hash not in self.ids:
            agent = request.headers.get("user-agent") if request.headers else None
            self.ids[request.session_hash] = self.store.record_session(participant or None, agent)
        return self.ids[request.session_hash]

    def new_stop_flag(self, request: gr.Request) -> threading.Event:
        flag = self.stop_flags[request.session_hash] = threading.Event()
        return flag

    def stop(self, request: gr.Request) -> None:
        flag = self.stop_flags.get(request.session_hash)
        if flag is not None:
            flag.set()


def sampling_controls(best_of: bool = False) -> list[gr.components.Component]:
    """Max tokens, temperature, top p, top k, repetition penalty, seed (and best-of-n, where offered)."""
    with gr.Accordion(t("settings"), open=False):
        with gr.Row():
            controls = [
                gr.Slider(1, 512, value=96, step=1, label=t("max_new_tokens")),
                gr.Slider(0, 2, value=0, step=0.05, label=t("temperature")),
                gr.Slider(0.05, 1, value=0.95, step=0.05, label="top p"),
                gr.Slider(0, 200, value=0, step=1, label="top k (0 = off)"),
                gr.Slider(1, 2, value=1.1, step=0.05, label="repetition penalty"),
                gr.Number(value=0, precision=0, label="seed"),
            ]
            if best_of:
                controls.append(gr.Slider(1, 8, value=1, step=1, label=t("best_of_n")))
            return controls


def sampling_from(max_tokens, temp, top_p, top_k, penalty, seed, stop=()) -> SamplingSettings:
    return SamplingSettings(
        max_new_tokens=int(max_tokens),
        temperature=float(temp),
        top_p=float(top_p),
        top_k=int(top_k),
        repetition_penalty=float(penalty),
        seed=None if seed is None else int(seed),
        stop=stop,
    )


def fitted_prompts(model, spec: PromptSpec, bank: Bank | None, text: str, variants: list[Variant],
                   pasts: list[list[dict]], max_new_tokens: int) -> tuple[list[str], list[list[dict]]]:
    """(prompt each variant sees, the conversation in it): the oldest turns are left out, with a notice, where
    the conversation would not fit the model's context with room for the answer."""
    prompts, asked = [], []
    for variant, past in zip(variants, pasts):
        prompt, dropped = fit_context(lambda h, v=variant: build_prompt(spec, bank, text, v.format, h), past,
                                      model.count_tokens, model.context_window - max_new_tokens)
        prompts.append(prompt)
        asked.append(past[dropped:] + [{"role": "user", "content": text}])
    if any(len(a) <= len(p) for a, p in zip(asked, pasts)):
        gr.Info("The oldest turns were left out to fit the model's context / 古いやり取りを省いて入力しました")
    return prompts, asked


def keep_best(model, variants: list[Variant], asked: list[list[dict]], step, n: int):
    """(each column's kept answer, the reward line): with best-of-n the highest-scored of its n candidates."""
    judged = [render_gemma_chat(a) for a in asked]  # the reward model reads every variant as a chat
    picks = [pick_best(model, judged[i], step[i * n:(i + 1) * n]) for i in range(len(variants))]
    return [p.best for p in picks], reward_summary(model.reward.folder, variants, picks, n)


def decision_summary(variants: list[Variant], columns) -> str | None:
    """One line per column whose adapter took a refuse-or-answer decision (`train decision`), or None."""
    lines = [f"- **{v.name}**: {'refuse / 断る' if c.decision[0] else 'answer / 答える'} (probe score "
             f"{c.decision[1]:+.2f})" for v, c in zip(variants, columns) if c.decision is not None]
    return "\n".join(["**Refuse-or-answer decision** / 拒否するかの判断", *lines]) if lines else None


def reward_summary(folder, variants: list[Variant], picks, n: int) -> str:
    """One line per column: the shown answer's reward, and with best-of-n every candidate's."""
    lines = [f"**Reward model** `{folder}` / 報酬モデルのスコア"]
    for variant, pick in zip(variants, picks):
        line = f"- {variant.name}: **{max(pick.scores):+.2f}**"
        if n > 1:
            line += f" (best of {n}: " + ", ".join(f"{s:+.2f}" for s in pick.scores) + ")"
        lines.append(line)
    return "\n".join(lines)


def column_label(variant: Variant | None) -> str:
    return "" if variant is None else f"{variant.name} · {'chat' if variant.format == 'chat' else 'completion'}"


def compare_tab(get_runtime: ModelLoading, live: LiveLineup, banks: dict[str, Bank], store, sessions: Sessions, name):
    """Builds the tab; returns a function that refreshes its column choices (after a hot-load) and its outputs."""
    first = live.names()[:MAX_COLUMNS]
    chosen = gr.CheckboxGroup(live.names(), value=first, label=t("columns"))
    with gr.Row(equal_height=True):
        prompt = gr.Textbox(label=t("prompt"), placeholder="日本の首都は / The capital of Japan is", lines=1,
                            max_lines=8, scale=6, autofocus=True)
        with gr.Column(scale=1, min_width=140):
            send = gr.Button(t("send"), variant="primary")
            with gr.Row():
                stop = gr.Button(t("stop"), variant="stop", size="sm")
                regenerate = gr.Button(t("regenerate"), size="sm")
                clear = gr.Button(t("clear"), size="sm")
    with gr.Row():
        mode = gr.Radio([(MODE_TITLES[m], m) for m in MODES], value="zero", label=t("mode"), scale=4)
        task = gr.Dropdown(
            [("free chat (no task) / 自由入力", "")]
            + [(f"{b.title['en']} / {b.title['ja']}", name) for name, b in banks.items()],
            value="", label=t("task"), scale=2,
        )
        shots = gr.Slider(1, 8, value=3, step=1, label=t("k"), scale=1)
        lang = gr.Radio([("English", "en"), ("日本語", "ja")], value="en", label=t("lang"), scale=1)
    sampling = sampling_controls(best_of=True)
    columns, panels, answer_ids, containers = [], [], [], []
    with gr.Row():
        for v in live.slots:  # empty slots wait, hidden, for versions trained while the app runs
            with gr.Column(visible=v is not None and v.name in first) as container:
                containers.append(container)
                columns.append(gr.Chatbot(
                    label=column_label(v), height=440, elem_classes=["answer-column"],
                    feedback_options=("Like", "Dislike"),
                ))
                with gr.Accordion(t("show_prompt"), open=False):
                    panels.append(gr.Textbox(label="exact input", lines=6, max_lines=30, interactive=False,
                                             elem_classes=["prompt-text"], buttons=["copy"]))
                answer_ids.append(gr.State([]))  # generation id of each answer in this column, in order
    with gr.Row(equal_height=True):
        ideal = gr.Textbox(label=t("ideal"), lines=2, scale=5)
        ideal_for = gr.Dropdown(live.names(), value=first[-1], label=t("ideal_for"), scale=2)
        save_ideal = gr.Button(t("save_correction"), scale=1)
    rewards = gr.Markdown(elem_classes=["reward-scores"])  # the reward model's scores, when one is loaded
    stored = gr.JSON(visible=False)  # {variant: generation id} of the latest answers, for API clients

    slots = len(live.slots)

    def respond(request: gr.Request, typed_name, text, mode_name, task_name, k, lang_code, *rest):
        who = participant(request, typed_name)
        settings_values, n, picked = rest[:6], int(rest[6] or 1), rest[7] or []
        histories, ids = rest[8:8 + slots], rest[8 + slots:]
        if not 1 <= len(picked) <= MAX_COLUMNS:
            raise gr.Error(f"Choose 1 to {MAX_COLUMNS} columns / 列を1〜{MAX_COLUMNS}個選んでください")
        variants = list(live.slots)
        on = [v is not None and v.name in picked for v in variants]  # only the chosen columns take part
        spec = PromptSpec(mode=mode_name, k=int(k), lang=lang_code)
        bank = banks.get(task_name) if task_name else None
        # With a task, a base model goes on to ask itself the next question: stop it there.
        settings = sampling_from(*settings_values, stop=tuple(f"\n{q}" for q in PLAIN_Q.values()) if bank else ())
        active = [v for v, o in zip(variants, on) if o]
        model = get_runtime()
        if n > 1 and model.reward is None:
            raise gr.Error("Best-of-n needs a reward model: train one in the Train tab (Reward model), then try "
                           "again; or set best-of-n to 1 / best-of-n には報酬モデルが必要です")
        if n > 1:
            settings = sampled_for_best_of_n(settings)

        def spread(values, other=None):
            """Values for the chosen columns, placed among all columns (the others unchanged)."""
            it = iter(values)
            return [next(it) if o else (gr.skip() if other is None else other[i]) for i, o in enumerate(on)]

        try:
            text = clean_message(text)
            pasts = [conversation(h) for h, o in zip(histories, on) if o]
            prompts, asked = fitted_prompts(model, spec, bank, text, active, pasts, settings.max_new_tokens)
            shown = [for_display(p + [{"role": "user", "content": text}, {"role": "assistant", "content": ""}])
                     for p in pasts]
            exact = [model_input_text(model, p) for p in prompts]
            cancel = sessions.new_stop_flag(request)
            adapters = [v.name if v.adapter else None for v in active]
            # Best-of-n: n rows per column in the same batch; the column shows its first candidate while sampling.
            rows = [i for i in range(len(active)) for _ in range(n)]
            for step in stream_side_by_side(model, [prompts[i] for i in rows], [adapters[i] for i in rows],
                                            settings, cancel):
                for chat, column in zip(shown, step[::n]):
                    chat[-1]["content"] = displayed(column.text)
                yield ("", *spread(shown), *spread(exact), *ids, gr.skip(), gr.skip())
            scores = None
            if model.reward is not None:
                step, scores = keep_best(model, active, asked, step, n)
                for chat, column in zip(shown, step):
                    chat[-1]["content"] = displayed(column.text)
            notes = "\n\n".join(note for note in (scores, decision_summary(active, step)) if note) or None
        except PlaygroundError as exc:
            raise gr.Error(str(exc)) from None
        if store is None:
            yield ("", *spread(shown), *spread(exact), *ids, notes or gr.skip(), gr.skip())
            return
        try:
            new = record_answers(store, model.model_id, tuple(active), step, asked, prompts, spec,
                                 task_name or None, settings, sessions.session_id(request, who), who)
        except FeedbackError as exc:
            gr.Warning(f"The answers are shown but were not stored: {exc}")
            yield ("", *spread(shown), *spread(exact), *ids, notes or gr.skip(), gr.skip())
            return
        grown = [old + [i] for old, i in zip([x for x, o in zip(ids, on) if o], new)]
        yield ("", *spread(shown), *spread(exact), *spread(grown, ids), notes or gr.skip(),
               {v.name: i for v, i in zip(active, new)})

    chosen.change(lambda picked: [gr.update(visible=v is not None and v.name in picked) for v in live.slots],
                  chosen, containers, api_name=False, queue=False)
    inputs = [name, prompt, mode, task, shots, lang, *sampling, chosen, *columns, *answer_ids]
    outputs = [prompt, *columns, *panels, *answer_ids, rewards, stored]
    for trigger, api_name in ((send.click, "compare"), (prompt.submit, False)):
        # One lane for every generation: the model answers one batch at a time.
        trigger(respond, inputs, outputs, api_name=api_name, concurrency_limit=1, concurrency_id="generation")

    def last_turn_removed(picked, *state):
        """Regenerate: take back the chosen columns' last exchange and ask its question again."""
        histories, ids = state[:slots], state[slots:]
        taking_part = [v is not None and v.name in picked and bool(h) for v, h in zip(live.slots, histories)]
        if not any(taking_part):
            raise gr.Error("There is nothing to regenerate yet / まだ再生成するものがありません")
        question = conversation(histories[taking_part.index(True)])[-2]["content"]
        return (
            question,
            *[h[:-2] if part else h for h, part in zip(histories, taking_part)],
            *[i[:-1] if part else i for i, part in zip(ids, taking_part)],
        )

    regenerate.click(last_turn_removed, [chosen, *columns, *answer_ids], [prompt, *columns, *answer_ids],
                     api_name=False, queue=False).then(
        respond, inputs, outputs, api_name=False, concurrency_limit=1, concurrency_id="generation")
    stop.click(sessions.stop, api_name="stop", queue=False)
    clear.click(lambda: [[] for _ in columns] * 2, outputs=[*columns, *answer_ids], api_name=False)

    for column, ids in zip(columns, answer_ids):
        def on_like(request: gr.Request, history, ids_so_far, typed_name, data: gr.LikeData):
            if store is None or data.liked in (None, ""):
                return
            ordinal = answer_ordinal(history, data.index if isinstance(data.index, int) else data.index[0])
            if ordinal >= len(ids_so_far):
                gr.Warning("This answer is still being written; vote when it is complete / 回答の完了後に投票してください")
                return
            value = 1 if data.liked in (True, "Like") else -1
            who = participant(request, typed_name)
            sessions.count_vote(request, who)
            try:
                store.record_vote(ids_so_far[ordinal], value, who)
            except FeedbackError as exc:
                raise gr.Error(str(exc)) from None
            gr.Info("Vote saved / 投票を保存しました 👍" if value > 0 else "Vote saved / 投票を保存しました 👎")

        column.like(on_like, [column, ids, name], None, api_name=False, queue=False)

    def save_correction(request: gr.Request, text, variant_name, typed_name, *ids):
        if store is None:
            raise gr.Error("No feedback database is open")
        column_ids = ids[[v.name if v else None for v in live.slots].index(variant_name)]
        if not column_ids:
            raise gr.Error(f"{variant_name} has no stored answer yet; send a prompt first / まず質問を送ってください")
        who = participant(request, typed_name)
        sessions.count_vote(request, who)
        try:
            store.record_correction(column_ids[-1], clean_message(text, "ideal answer"), who)
        except (FeedbackError, GenerationError) as exc:
            raise gr.Error(str(exc)) from None
        gr.Info("Ideal answer saved / 理想の回答を保存しました")
        return ""

    save_ideal.click(save_correction, [ideal, ideal_for, name, *answer_ids], [ideal], api_name=False)

    def refresh(picked):
        """New variants become choices; a chosen one shows its column."""
        names = live.names()
        return (
            gr.update(choices=names, value=[n for n in picked or [] if n in names]),
            gr.update(choices=names),
            *[gr.update(label=column_label(v)) for v in live.slots],
        )

    return refresh, [chosen], [chosen, ideal_for, *columns]
