"""The first page: one prompt streams into every variant's column at once, from a single event."""

from __future__ import annotations

import threading

import gradio as gr

from playground.config import Lineup
from playground.errors import FeedbackError, PlaygroundError
from playground.feedback import FeedbackStore
from playground.models.generation import SamplingSettings, model_input_text, stream_side_by_side
from playground.models.runtime import Runtime
from playground.prompting.banks import Bank
from playground.prompting.modes import MODE_TITLES, MODES, PLAIN_Q, PromptSpec, build_prompt
from playground.recording import record_answers

CSS = """
.answer-column .message { font-size: 1.05rem; }
.prompt-text textarea { font-family: ui-monospace, monospace; font-size: 0.85rem; }
"""


def message_text(content) -> str:
    """Gradio 6 chat items hold a string or a list of content blocks; the model sees plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, list):
        return "".join(message_text(part) for part in content)
    return ""


def conversation(history: list[dict]) -> list[dict]:
    """A column's chat history as plain {"role", "content"} turns."""
    return [{"role": m["role"], "content": message_text(m["content"])} for m in history or []]


def build_app(runtime: Runtime, lineup: Lineup, banks: dict[str, Bank], store: FeedbackStore | None = None) -> gr.Blocks:
    variants = lineup.variants
    with gr.Blocks(title="Alignment Playground") as app:
        gr.Markdown(
            f"## Alignment Playground\nBase model **{runtime.model_id}**: one prompt goes to every column at once."
        )
        with gr.Row(equal_height=True):
            prompt = gr.Textbox(
                label="Prompt",
                placeholder="日本の首都は / The capital of Japan is",
                lines=1,
                max_lines=8,
                scale=6,
                autofocus=True,
            )
            with gr.Column(scale=1, min_width=120):
                send = gr.Button("Send", variant="primary")
                stop = gr.Button("Stop", variant="stop")
                clear = gr.Button("Clear")
        with gr.Row():
            mode = gr.Radio(
                [(MODE_TITLES[m], m) for m in MODES],
                value="zero",
                label="Prompting mode / プロンプトの方式",
                scale=4,
            )
            task = gr.Dropdown(
                [("free chat (no task) / 自由入力", "")]
                + [(f"{b.title['en']} / {b.title['ja']}", name) for name, b in banks.items()],
                value="",
                label="Task bank / タスク",
                scale=2,
            )
            shots = gr.Slider(1, 8, value=3, step=1, label="k (few-shot examples)", scale=1)
            lang = gr.Radio([("English", "en"), ("日本語", "ja")], value="en", label="Examples in", scale=1)
        with gr.Accordion("Generation settings", open=False):
            with gr.Row():
                max_new_tokens = gr.Slider(1, 512, value=96, step=1, label="max new tokens")
                temperature = gr.Slider(0, 2, value=0, step=0.05, label="temperature (0 = greedy)")
                top_p = gr.Slider(0.05, 1, value=0.95, step=0.05, label="top p")
                top_k = gr.Slider(0, 200, value=0, step=1, label="top k (0 = off)")
                repetition_penalty = gr.Slider(1, 2, value=1.1, step=0.05, label="repetition penalty")
                seed = gr.Number(value=0, precision=0, label="seed")
        columns, prompt_panels = [], []
        with gr.Row():
            for v in variants:
                with gr.Column():
                    columns.append(
                        gr.Chatbot(
                            label=f"{v.name} · {'chat' if v.format == 'chat' else 'completion'}",
                            height=460,
                            elem_classes=["answer-column"],
                            feedback_options=None,
                        )
                    )
                    with gr.Accordion("show prompt / プロンプトを表示", open=False):
                        prompt_panels.append(
                            gr.Textbox(
                                label=f"exact input of {v.name}",
                                lines=6,
                                max_lines=30,
                                interactive=False,
                                elem_classes=["prompt-text"],
                                buttons=["copy"],
                            )
                        )

        stop_flags: dict[str, threading.Event] = {}  # per browser session: Stop ends that session's generation
        sessions: dict[str, str] = {}  # browser session -> its row in the sessions table

        def respond(request: gr.Request, text, mode_name, task_name, k, lang_code, max_tokens, temp, p, top, penalty,
                    seed_value, *histories):
            spec = PromptSpec(mode=mode_name, k=int(k), lang=lang_code)
            bank = banks.get(task_name) if task_name else None
            settings = SamplingSettings(
                max_new_tokens=int(max_tokens),
                temperature=float(temp),
                top_p=float(p),
                top_k=int(top),
                repetition_penalty=float(penalty),
                seed=None if seed_value is None else int(seed_value),
                # With a task, a base model goes on to ask itself the next question: stop it there.
                stop=tuple(f"\n{q}" for q in PLAIN_Q.values()) if bank else (),
            )
            try:
                asked = [conversation(h) + [{"role": "user", "content": text or ""}] for h in histories]
                prompts = [build_prompt(spec, bank, text or "", v.format, a[:-1]) for v, a in zip(variants, asked)]
                adapters = [v.name if v.adapter else None for v in variants]
                shown = [a + [{"role": "assistant", "content": ""}] for a in asked]
                exact = [model_input_text(runtime, p) for p in prompts]
                cancel = stop_flags[request.session_hash] = threading.Event()
                for step in stream_side_by_side(runtime, prompts, adapters, settings, cancel):
                    for chat, column in zip(shown, step):
                        chat[-1]["content"] = column.text
                    yield ("", *shown, *exact)
            except PlaygroundError as exc:
                raise gr.Error(str(exc)) from None
            if store is not None:
                try:
                    if request.session_hash not in sessions:
                        sessions[request.session_hash] = store.record_session(user_agent=request.headers.get("user-agent"))
                    record_answers(store, runtime.model_id, variants, step, asked, prompts, spec, task_name or None,
                                   settings, sessions[request.session_hash])
                except FeedbackError as exc:
                    gr.Warning(f"The answers are shown but were not stored: {exc}")

        inputs = [prompt, mode, task, shots, lang, max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed,
                  *columns]
        outputs = [prompt, *columns, *prompt_panels]
        events = [
            # One lane for both triggers: the model generates one batch at a time.
            trigger(respond, inputs, outputs, api_name=name, concurrency_limit=1, concurrency_id="generation")
            for trigger, name in ((send.click, "compare"), (prompt.submit, False))
        ]

        def stop_generation(request: gr.Request):
            flag = stop_flags.get(request.session_hash)
            if flag is not None:
                flag.set()

        stop.click(stop_generation, api_name="stop", queue=False)
        clear.click(lambda: [[] for _ in columns], outputs=columns, api_name=False)
    return app
