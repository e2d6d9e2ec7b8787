"""The run's heartbeat while a phase works: the sweep tells a live run from a dead one by it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dmflow.models import TrainingRun
from dmflow.store.base import RunStore

HEARTBEAT_EVERY_S = 20.0
"""Well inside the 30 s promised to operators, whatever a phase is busy with (a slow LLM
batch, writing the queries dataset, a long wait between job status checks)."""


async def _beat(store: RunStore, run: TrainingRun) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY_S)
        await asyncio.to_thread(store.update_progress, run)


@asynccontextmanager
async def heartbeat(store: RunStore, run: TrainingRun) -> AsyncIterator[None]:
    beating = asyncio.create_task(_beat(store, run))
    try:
        yield
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
