"""The playground page: Compare, Arena, Leaderboard and Data tabs, thin over the services, plus named API endpoints
(compare, arena, vote, correction, arena_vote) that a script can drive with gradio_client."""

from __future__ import annotations

import gradio as gr

from playground.config import Lineup
from playground.errors import PlaygroundError
from playground.feedback import FeedbackStore
from playground.models.runtime import Runtime
from playground.prompting.banks import Bank
from playground.prompting.inputs import clean_message
from playground.ui.access import Access, participant
from playground.ui.arena import arena_tab
from playground.ui.arena import arena_vote as store_arena_vote
from playground.ui.board import data_tab, leaderboard_tab
from playground.ui.compare import Sessions, compare_tab
from playground.ui.i18n import I18N, t
from playground.training.jobs import Jobs
from playground.ui.live import LiveLineup
from playground.ui.loading import LOADING, ModelLoading
from playground.ui.train import TrainingPlace, train_tab

CSS = """
.answer-column .message, .arena-column .message { font-size: 1.05rem; }
.prompt-text textarea { font-family: ui-monospace, monospace; font-size: 0.85rem; }
.arena-reveal { font-size: 1.2rem; text-align: center; }
"""


# Every generation event shares one lane (concurrency_id "generation", limit 1): one model answers one batch at a
# time. Other events default to one at a time too. Past max_size waiting requests, Gradio answers at once that the
# queue is full and to try again, rather than letting a room's requests pile up.
QUEUE = {"default_concurrency_limit": 1, "max_size": 64}


def launch_options() -> dict:
    """What Blocks.launch needs besides the address: styling and the interface languages."""
    return {"css": CSS, "i18n": I18N}


def build_app(
    runtime: Runtime | ModelLoading,
    lineup: Lineup,
    banks: dict[str, Bank],
    store: FeedbackStore | None = None,
    training: TrainingPlace | None = None,
    access: Access = Access(),
) -> gr.Blocks:
    """The page; `runtime` may still be loading (the page says so until it is ready). With `training`, a Train tab
    retrains from the feedback and hot-loads the new version. `access` says who may do what (see access.py)."""
    loading = runtime if isinstance(runtime, ModelLoading) else ModelLoading.ready(runtime)
    live = LiveLineup(lineup)
    sessions = Sessions(store)
    with gr.Blocks(title="Alignment Playground") as app:
        with gr.Row(equal_height=True):
            header = gr.Markdown(heading(loading))
            name = gr.Textbox(label=t("name"), max_lines=1, scale=0, min_width=220)
        status = gr.Markdown(LOADING, visible=not loading.done(), elem_classes=["loading-status"])
        with gr.Tabs():
            with gr.Tab(t("tab_compare")) as compare:
                refresh, refresh_inputs, refresh_outputs = compare_tab(loading, live, banks, store, sessions, name)
            with gr.Tab(t("tab_arena")):
                arena_tab(loading, live, store, sessions, name)
            with gr.Tab(t("tab_leaderboard")) as board:
                show_board, board_outputs = leaderboard_tab(store)
            with gr.Tab(t("tab_data")) as data:
                show_data, data_outputs = data_tab(store)
            if training is not None and store is not None:
                with gr.Tab(t("tab_train")):
                    train_tab(loading, live, Jobs(store), training, access, refresh, refresh_inputs, refresh_outputs)
        compare.select(refresh, refresh_inputs, refresh_outputs, api_name=False, queue=False)
        if not loading.done():
            poll = gr.Timer(1.0)
            poll.tick(
                lambda: (heading(loading), gr.update(visible=not loading.done()), gr.Timer(active=not loading.done())),
                outputs=[header, status, poll], api_name=False, queue=False,
            )
        # A signed-in participant's name is the one they signed in with.
        app.load(signed_in_name, outputs=name, api_name=False, queue=False)
        board.select(show_board, outputs=board_outputs, api_name=False)
        data.select(show_data, outputs=data_outputs, api_name=False)
        _api(store, sessions)
    return app


def signed_in_name(request: gr.Request):
    name = getattr(request, "username", None)
    return gr.update(value=name, interactive=False) if name else gr.skip()


def heading(loading: ModelLoading) -> str:
    model = loading().model_id if loading.done() and not loading.future.exception() else "…"
    return (
        f"## Alignment Playground\nBase model **{model}**: base, instruction-tuned and aligned variants side by side"
        " / ベースモデルと指示チューニング・アラインメント済みモデルを並べて比較"
    )


def _api(store: FeedbackStore | None, sessions: Sessions) -> None:
    """Endpoints by answer id, for scripts (the ids come back from /compare and /arena)."""

    def stored(action):
        if store is None:
            raise gr.Error("No feedback database is open")
        try:
            return action()
        except PlaygroundError as exc:
            raise gr.Error(str(exc)) from None

    def counted(request: gr.Request, name: str) -> str | None:
        who = participant(request, name)
        sessions.count_vote(request, who)
        return who

    def vote(request: gr.Request, generation_id: int, value: int, name: str = "") -> int:
        """Thumbs up (+1) or down (-1) on a stored answer; returns the vote's id."""
        who = counted(request, name)
        return stored(lambda: store.record_vote(int(generation_id), int(value), who))

    def correction(request: gr.Request, generation_id: int, text: str, name: str = "") -> int:
        """The answer you would have wanted instead; returns the correction's id."""
        who = counted(request, name)
        return stored(lambda: store.record_correction(int(generation_id), clean_message(text, "correction"), who))

    def arena_vote(request: gr.Request, left_id: int, right_id: int, outcome: str, name: str = "") -> dict:
        """A verdict (left, right, tie or both_bad) on an arena round; returns the two variants' names and whether
        it counts (only a round's first verdict was blind)."""
        return store_arena_vote(store, left_id, right_id, outcome, counted(request, name))

    gr.api(vote, api_name="vote")
    gr.api(correction, api_name="correction")
    gr.api(arena_vote, api_name="arena_vote")
