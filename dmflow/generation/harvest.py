"""What generation has finished but not yet recorded, shared by every batch in flight.

A generator puts each chunk's result here the moment the chunk is done, and counts each
request the moment it is sent; the phase takes everything at once and records it. So a
crash loses only what was taken since the last record (a few chunks, under a second),
and a failure can still record the finished chunks of every batch in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from dmflow.generation.base import GeneratedBatch
from dmflow.models import ChunkResult


class Harvest:
    def __init__(self) -> None:
        self._results: list[ChunkResult] = []
        self._usage: dict[str, float] = {}
        self._oldest_at: float | None = None
        self._closing = False
        self._arrived: asyncio.Event | None = None

    def add(self, result: ChunkResult) -> None:
        self._results.append(result)
        self._changed()

    def count(self, key: str, amount: float) -> None:
        self._usage[key] = self._usage.get(key, 0) + amount
        self._changed()

    @property
    def pending(self) -> int:
        """Finished chunks not yet taken."""
        return len(self._results)

    @property
    def empty(self) -> bool:
        return not self._results and not self._usage

    def take(self) -> GeneratedBatch:
        """Everything finished so far, leaving the harvest empty."""
        batch = GeneratedBatch(results=self._results, usage=self._usage)
        self._results, self._usage, self._oldest_at = [], {}, None
        return batch

    def close(self) -> None:
        """Wake whoever waits in `ready`: no more waiting for a full harvest."""
        self._closing = True
        self._event().set()

    async def ready(self, chunks: int, within_s: float) -> bool:
        """Wait until `chunks` results are pending, or anything pending is `within_s` old.
        False once closed: the caller records what is left its own way."""
        while not self._closing:
            if self.pending >= chunks:
                return True
            timeout = None
            if self._oldest_at is not None:
                timeout = within_s - (time.monotonic() - self._oldest_at)
                if timeout <= 0:
                    return True
            event = self._event()
            event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        return False

    def _changed(self) -> None:
        if self._oldest_at is None:
            self._oldest_at = time.monotonic()
        if self._arrived is not None:
            self._arrived.set()

    def _event(self) -> asyncio.Event:
        if self._arrived is None:
            self._arrived = asyncio.Event()
        return self._arrived
