"""A vote rate limit per participant: enough for anyone reading the answers, too few for a script stuffing votes."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

import gradio as gr

VOTES_PER_MINUTE = 30


class RateLimit:
    """At most `per_minute` actions in any 60 seconds for one key (a participant's name, else a browser session)."""

    def __init__(self, per_minute: int = VOTES_PER_MINUTE, clock=time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self.recent: dict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def check(self, key: str) -> None:
        """Count one action for `key`; a page error (nothing stored) when it is over the limit."""
        now = self.clock()
        with self.lock:
            times = self.recent[key]
            while times and now - times[0] >= 60:
                times.popleft()
            if len(times) >= self.per_minute:
                wait = int(60 - (now - times[0])) + 1
                raise gr.Error(f"Too many votes: at most {self.per_minute} a minute. Try again in {wait} s; "
                               f"this one was not saved / 投票が多すぎます。{wait}秒後にもう一度どうぞ")
            times.append(now)
