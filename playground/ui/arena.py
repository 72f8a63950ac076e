"""Arena tab: two anonymous variants answer in random order; names are revealed only after the vote."""

from __future__ import annotations

import random

import gradio as gr

from playground.errors import FeedbackError, PlaygroundError
from playground.models.generation import stream_side_by_side
from playground.prompting.inputs import clean_message
from playground.prompting.modes import PromptSpec
from playground.recording import record_answers
from playground.ui.access import participant
from playground.ui.compare import Sessions, fitted_prompts, sampling_controls, sampling_from
from playground.ui.i18n import t
from playground.ui.messages import displayed, for_display
from playground.ui.live import LiveLineup
from playground.ui.loading import ModelLoading

OUTCOMES = ("left", "right", "tie", "both_bad")
HIDDEN = "**A** ? · **B** ? — vote to reveal / 投票すると名前が表示されます"


def arena_tab(get_runtime: ModelLoading, live: LiveLineup, store, sessions: Sessions, name) -> None:
    gr.Markdown(t("arena_intro"))
    if len(live.variants) < 2:
        gr.Markdown("The arena needs at least two variants in the lineup / アリーナには2つ以上のモデルが必要です")
        return
    with gr.Row(equal_height=True):
        prompt = gr.Textbox(label=t("prompt"), lines=1, max_lines=8, scale=6)
        ask = gr.Button(t("arena_send"), variant="primary", scale=1)
    sampling = sampling_controls()
    with gr.Row():
        left = gr.Chatbot(label="A", height=380, elem_classes=["arena-column"], feedback_options=None)
        right = gr.Chatbot(label="B", height=380, elem_classes=["arena-column"], feedback_options=None)
    with gr.Row():  # enabled once both answers are stored, until the vote
        buttons = [gr.Button(t(key), interactive=False) for key in ("a_better", "b_better", "tie", "both_bad")]
    reveal = gr.Markdown(HIDDEN, elem_classes=["arena-reveal"])
    round_state = gr.State({})  # the round's variants and answer ids, and whether it was voted on
    round_ids = gr.JSON(visible=False)  # {"left_id", "right_id"} for API clients; names stay hidden
    closed = [gr.update(interactive=False)] * len(buttons)

    def play(request: gr.Request, typed_name, text, *settings_values):
        who = participant(request, typed_name)
        model = get_runtime()
        pair = random.sample(live.variants, 2)  # random variants (hot-loaded ones too), in random order
        spec = PromptSpec()
        settings = sampling_from(*settings_values)
        try:
            text = clean_message(text)
            prompts, asked = fitted_prompts(model, spec, None, text, pair, [[], []], settings.max_new_tokens)
            adapters = [v.name if v.adapter else None for v in pair]
            chats = [for_display(a + [{"role": "assistant", "content": ""}]) for a in asked]
            for step in stream_side_by_side(model, prompts, adapters, settings, sessions.new_stop_flag(request)):
                for chat, column in zip(chats, step):
                    chat[-1]["content"] = displayed(column.text)
                yield "", *chats, HIDDEN, {}, gr.skip(), *closed
        except PlaygroundError as exc:
            raise gr.Error(str(exc)) from None
        if store is None:
            return
        try:
            ids = record_answers(store, model.model_id, tuple(pair), step, asked, prompts, spec, None,
                                 settings, sessions.session_id(request, who), who)
        except FeedbackError as exc:
            raise gr.Error(f"The answers were not stored, so this round cannot be voted on: {exc}") from None
        state = {"names": [v.name for v in pair], "ids": ids, "voted": False}
        yield "", *chats, HIDDEN, state, {"left_id": ids[0], "right_id": ids[1]}, *[gr.update(interactive=True)] * 4

    outputs = [prompt, left, right, reveal, round_state, round_ids, *buttons]
    ask.click(play, [name, prompt, *sampling], outputs, api_name="arena", concurrency_limit=1,
              concurrency_id="generation")
    prompt.submit(play, [name, prompt, *sampling], outputs, api_name=False, concurrency_limit=1,
                  concurrency_id="generation")

    for button, outcome in zip(buttons, OUTCOMES):
        def vote(request: gr.Request, state, typed_name, outcome=outcome):
            if not state.get("ids"):
                raise gr.Error("Ask both models something first / まず質問してください")
            if state["voted"]:
                raise gr.Error("You already voted in this round; ask a new question / このラウンドは投票済みです")
            who = participant(request, typed_name)
            sessions.count_vote(request, who)
            names = arena_vote(store, *state["ids"], outcome, who)
            gr.Info("Vote saved / 投票を保存しました")
            return {**state, "voted": True}, f"**A** = {names['left']} · **B** = {names['right']}", *closed

        button.click(vote, [round_state, name], [round_state, reveal, *buttons], api_name=False, queue=False)


def arena_vote(store, left_id: int, right_id: int, outcome: str, who: str | None = None) -> dict:
    """Store an A/B verdict, then reveal the two variants' names. Only a round's first verdict was given blind:
    any later one (the names were out by then) is kept, but marked not blind, so the ratings never count it."""
    if store is None:
        raise gr.Error("No feedback database is open")
    left_id, right_id = int(left_id), int(right_id)
    try:
        earlier = store.query(
            "SELECT 1 FROM comparisons WHERE (left_id = ? AND right_id = ?) OR (left_id = ? AND right_id = ?)",
            [left_id, right_id, right_id, left_id],
        )
        store.record_comparison(left_id, right_id, outcome, who or None, blind=not earlier)
        names = {"left": store.generation(left_id)["variant"], "right": store.generation(right_id)["variant"]}
    except FeedbackError as exc:
        raise gr.Error(str(exc)) from None
    return {**names, "counted": not earlier}
