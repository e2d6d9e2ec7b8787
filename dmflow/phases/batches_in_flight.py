"""A bounded window of work in flight: start the next piece when one of the window ends."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class BatchesInFlight(Generic[T]):
    """At most `size` coroutines run at once. `add` starts one and, when the window is
    full, waits until at least one has finished; it hands back what finished (a failure
    is raised there). `drain` waits for the rest; `cancel` stops them. Once `enough`
    is set (the cap is met), `add` and `drain` stop waiting and cancel what runs: its
    answers could not be recorded, and every further request would be paid for nothing."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.enough = asyncio.Event()
        self._running: set[asyncio.Task[T]] = set()

    async def add(self, work: Coroutine[Any, Any, T]) -> list[T]:
        self._running.add(asyncio.create_task(work))
        if len(self._running) < self.size:
            return []
        return await self._settle(asyncio.FIRST_COMPLETED)

    async def drain(self) -> list[T]:
        return await self._settle(asyncio.ALL_COMPLETED) if self._running else []

    async def cancel(self) -> None:
        for running in self._running:
            running.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        self._running.clear()

    async def _settle(self, when: str) -> list[T]:
        enough = asyncio.create_task(self.enough.wait())
        try:
            pending: set[asyncio.Future[Any]] = set(self._running)
            while pending and not enough.done():
                _, pending = await asyncio.wait(
                    {*pending, enough}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(enough)
                if when == asyncio.FIRST_COMPLETED:
                    break
        finally:
            enough.cancel()
        if self.enough.is_set():
            await self.cancel()
            return []
        done = {task for task in self._running if task.done()}
        self._running -= done
        # Every finished piece's outcome is retrieved, the first failure raised: two batches
        # failing at once (an outage) must not leave one "exception never retrieved".
        outcomes = [
            asyncio.CancelledError() if f.cancelled() else f.exception() or f.result() for f in done
        ]
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes  # type: ignore[return-value]
