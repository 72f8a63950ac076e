"""The variants being served, in column slots: a version trained in the app takes a free slot at once."""

from __future__ import annotations

import threading

from playground.config import Lineup, Variant
from playground.errors import PlaygroundError

SPARE_SLOTS = 3  # columns kept hidden for versions trained while the app runs


class LiveLineup:
    def __init__(self, lineup: Lineup, spare: int = SPARE_SLOTS):
        self.slots: list[Variant | None] = [*lineup.variants, *[None] * spare]
        self._lock = threading.Lock()

    @property
    def variants(self) -> list[Variant]:
        return [v for v in self.slots if v is not None]

    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    def add(self, variant: Variant) -> int:
        """Put a hot-loaded variant in the first free slot; returns the slot."""
        with self._lock:
            if variant.name in self.names():
                raise PlaygroundError(f"a column named {variant.name!r} is already served")
            if None not in self.slots:
                raise PlaygroundError(
                    f"{variant.name} is trained and saved, but every column slot is taken; restart the app to see it"
                )
            slot = self.slots.index(None)
            self.slots[slot] = variant
            return slot
