"""The model loads on the model thread while the page is already served; until then the page says so."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Callable

import gradio as gr

from playground.models import model_thread
from playground.models.runtime import Runtime

LOADING = (
    "⏳ **Loading the model…** The first start builds it from its package (about a minute); later starts take "
    "seconds. / **モデルを読み込み中です。** 初回は1分ほどかかります。"
)


class ModelLoading:
    """A runtime that is ready, or on its way."""

    def __init__(self, future: Future):
        self.future = future

    @classmethod
    def start(cls, load: Callable[[], Runtime]) -> "ModelLoading":
        return cls(model_thread.submit(load))

    @classmethod
    def ready(cls, runtime: Runtime) -> "ModelLoading":
        future: Future = Future()
        future.set_result(runtime)
        return cls(future)

    def done(self) -> bool:
        return self.future.done()

    def __call__(self) -> Runtime:
        """The runtime, or a message in the page while it is still loading."""
        if not self.future.done():
            raise gr.Error("The model is still loading; try again in a moment / モデルを読み込み中です。少し待ってください")
        return self.future.result()
