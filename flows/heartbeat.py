"""The run's heartbeat while a phase works: the sweep tells a live run from a dead one by it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dmflow import resources
from dmflow.driver import Driver
from dmflow.models import TrainingRun
from dmflow.settings import Settings
from dmflow.store.base import RunStore

HEARTBEAT_EVERY_S = 20.0
"""Well inside the 30 s promised to operators, whatever a phase is busy with (a slow LLM
batch, writing the queries dataset, a long wait between job status checks)."""


def beat_interval_s(settings: Settings) -> float:
    """Often enough that a live run never looks stale, even with a short stale limit."""
    return min(HEARTBEAT_EVERY_S, settings.stale_after_s / 4)


async def _beat(store: RunStore, run: TrainingRun, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(store.update_progress, run)


@asynccontextmanager
async def heartbeat(store: RunStore, run: TrainingRun) -> AsyncIterator[None]:
    """Claim the run for this process (its lease) and beat its heartbeat while the phase
    works."""
    await asyncio.to_thread(store.claim, run, *Driver.current().as_lease())
    beating = asyncio.create_task(_beat(store, run, beat_interval_s(resources.settings())))
    try:
        yield
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
