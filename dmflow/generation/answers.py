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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from dmflow.chunks import Chunk
from dmflow.errors import DmflowError
from dmflow.models import ChunkResult

UNRECORDED_LIMIT = 16
"""Chunks answered and not yet recorded beyond the requests in flight: the two share one
budget, `concurrency + UNRECORDED_LIMIT` (`Answers.sending`), and a request waits for
room before it is sent. A request in flight is a chunk that may be answered soon, so
while a record is written, chunks answered meanwhile take the room of requests not sent
and the asking goes on (with a room of its own for each, every record's ~40 ms stopped
a quarter of the requests at concurrency 64). What a database outage or a kill can
cost: every slot in flight and 16 answered."""


@dataclass
class AnswersToRecord:
    """What one record stores: finished chunks and the usage counted since the last."""

    results: list[ChunkResult]
    """Each chunk done with questions, or skipped with its reason."""
    usage: dict[str, float] = field(default_factory=dict)
    """Requests, tokens and estimated cost."""
    key: UUID = field(default_factory=uuid4)
    """Recorded with it: its usage counts once, however often a retry records it."""


class RecordingStopped(DmflowError):
    """Recording failed for good: nothing more may be asked (the recorder's own error is
    what the phase reports)."""


class Answers:
    """The phase's answered chunks (and counted requests) not yet recorded: generators
    put, the recorder takes, and a request waits here for room before it is sent."""

    def __init__(self) -> None:
        self._results: list[ChunkResult] = []
        self._usage: dict[str, float] = {}
        self._oldest_at: float | None = None
        self._closing = False
        self._arrived: asyncio.Event | None = None
        self._recording = 0
        self._stopped = False
        self._in_flight = 0
        self._room: asyncio.Condition | None = None
        self.unanswered: list[Chunk] = []
        """Chunks the endpoint never answered (transport failures on every try): not
        recorded, so the phase's later pass or a recovery asks them again."""
        self.unanswered_reason = ""

    def add(self, result: ChunkResult) -> None:
        self._results.append(result)
        self._changed()

    def count(self, key: str, amount: float) -> None:
        self._usage[key] = self._usage.get(key, 0) + amount
        self._changed()

    def give_up(self, chunk: Chunk, reason: str) -> None:
        self.unanswered.append(chunk)
        self.unanswered_reason = reason

    def take_unanswered(self) -> list[Chunk]:
        taken, self.unanswered = self.unanswered, []
        return taken

    @property
    def pending(self) -> int:
        """Finished chunks not yet taken."""
        return len(self._results)

    @property
    def unrecorded(self) -> int:
        """Finished chunks not yet recorded: pending, or taken by a record not yet done."""
        return len(self._results) + self._recording

    async def room(self, limit: int = UNRECORDED_LIMIT) -> None:
        """Wait until fewer than `limit` finished chunks wait to be recorded (backpressure:
        a database that does not answer stops the asking). Raises `RecordingStopped` once
        recording has failed for good."""
        await self._wait_for_room(lambda: self.unrecorded < limit)

    @contextlib.asynccontextmanager
    async def sending(self, concurrency: int) -> AsyncIterator[None]:
        """Room for one request, held until it is answered: requests in flight and
        finished chunks not yet recorded stay under `concurrency + UNRECORDED_LIMIT`
        together. Raises `RecordingStopped` once recording has failed for good."""
        budget = concurrency + UNRECORDED_LIMIT
        await self._wait_for_room(lambda: self.unrecorded + self._in_flight < budget)
        self._in_flight += 1
        try:
            yield
        finally:
            # No wake-up here: an answer becomes a finished chunk, and one that does not
            # frees room only while a record is due anyway (what waits is unrecorded).
            self._in_flight -= 1

    async def _wait_for_room(self, has_room: Callable[[], bool]) -> None:
        if self._stopped:
            raise RecordingStopped("recording stopped")
        if has_room():
            return
        condition = self._condition()
        async with condition:
            await condition.wait_for(lambda: self._stopped or has_room())
        if self._stopped:
            raise RecordingStopped("recording stopped")

    async def recorded(self, chunks: int) -> None:
        """A record of `chunks` taken chunks has ended (stored, or failed for good)."""
        self._recording = max(0, self._recording - chunks)
        await self._wake_room()

    async def stop(self) -> None:
        """Recording failed for good: wake and fail every request waiting for room."""
        self._stopped = True
        await self._wake_room()

    def take(self) -> AnswersToRecord:
        """Everything finished so far, leaving this empty."""
        batch = AnswersToRecord(results=self._results, usage=self._usage)
        self._recording += len(self._results)
        self._results, self._usage, self._oldest_at = [], {}, None
        return batch

    def close(self) -> None:
        """Wake whoever waits in `ready`: no more waiting for enough answers."""
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

    async def _wake_room(self) -> None:
        condition = self._condition()
        async with condition:
            condition.notify_all()

    def _condition(self) -> asyncio.Condition:
        if self._room is None:
            self._room = asyncio.Condition()
        return self._room

    def _event(self) -> asyncio.Event:
        if self._arrived is None:
            self._arrived = asyncio.Event()
        return self._arrived
