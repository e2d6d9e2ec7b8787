"""A bounded window of work in flight: start the next piece when one of the window ends."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class BatchesInFlight(Generic[T]):
    """At most `size` coroutines run at once. `add` starts one and, when the window is
    full, waits until at least one has finished; it hands back what finished (a failure
    is raised there). `drain` waits for the rest; `cancel` stops them."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
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
        done, self._running = await asyncio.wait(self._running, return_when=when)
        # Every finished piece's outcome is retrieved, the first failure raised: two batches
        # failing at once (an outage) must not leave one "exception never retrieved".
        outcomes = [
            asyncio.CancelledError() if f.cancelled() else f.exception() or f.result() for f in done
        ]
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes  # type: ignore[return-value]
