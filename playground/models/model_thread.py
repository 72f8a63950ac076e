"""All model work (loading, adapters, generation) runs on one long-lived thread.

Measured on a 2-core CPU: generate() run from another thread than the one that did the process's earlier torch
work decodes about 25% slower (52 -> 66 ms a token): each thread that runs torch ops gets its own OpenMP team,
and two teams on two cores get in each other's way. One model thread also means one job at a time, so an
adapter change never lands in the middle of a forward pass.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")
_thread: threading.Thread | None = None


def _remember_thread() -> None:
    global _thread
    _thread = threading.current_thread()


_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model", initializer=_remember_thread)


def on_model_thread() -> bool:
    return threading.current_thread() is _thread


def submit(fn: Callable[..., T], *args, **kwargs) -> Future:
    """Queue fn on the model thread; jobs run one at a time, in order."""
    return _executor.submit(fn, *args, **kwargs)


def call(fn: Callable[..., T], *args, **kwargs) -> T:
    """Run fn on the model thread and wait for its result (or exception)."""
    if on_model_thread():
        return fn(*args, **kwargs)
    return submit(fn, *args, **kwargs).result()
