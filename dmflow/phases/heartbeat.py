"""The run's heartbeat while a phase works: the sweep tells a live run from a dead one by it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dmflow.models import TrainingRun
from dmflow.settings import Settings
from dmflow.store.base import RunStore

logger = logging.getLogger("dmflow.heartbeat")

HEARTBEAT_EVERY_S = 20.0
"""Well inside the 30 s promised to operators, whatever a phase is busy with (a slow LLM
batch, writing the queries dataset, a long wait between job status checks)."""


def beat_interval_s(settings: Settings) -> float:
    """Often enough that a live run never looks stale, even with a short stale limit."""
    return min(HEARTBEAT_EVERY_S, settings.stale_after_s / 4)


async def _beat(store: RunStore, run: TrainingRun, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(store.update_progress, run)
        except Exception as exc:  # one missed beat (a database blip) must not stop the rest
            logger.warning("could not beat the heartbeat of run %s: %s", run.id, exc)


@asynccontextmanager
async def heartbeat(store: RunStore, run: TrainingRun, settings: Settings) -> AsyncIterator[None]:
    """Beat the heartbeat of a run this process has entered while its phase works."""
    beating = asyncio.create_task(_beat(store, run, beat_interval_s(settings)))
    try:
        yield
    finally:
        beating.cancel()
        [ended] = await asyncio.gather(beating, return_exceptions=True)
        # A signal turned into an exception (Prefect's TerminationSignal) may land in this
        # task's step: it must end the flow, not vanish with the task.
        if isinstance(ended, BaseException) and not isinstance(
            ended, asyncio.CancelledError | Exception
        ):
            raise ended
