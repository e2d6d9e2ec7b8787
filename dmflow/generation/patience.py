"""Record a batch through a database that may be gone for a while.

A dropped connection, a pooler restart or a failover that is back within the wait costs
nothing: the same record (same key, so its usage counts once and its chunks once) is
tried again. Meanwhile generation asks nothing more (the answers' backpressure). A
database gone for longer than the wait stops the phase with one line that says what is
safe and what to do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from dmflow.errors import DatabaseUnavailable
from dmflow.generation.answers import AnswersToRecord
from dmflow.models import TrainingRun
from dmflow.run_ids import short
from dmflow.store.base import RunStore, record_or_skip_unstorable

FIRST_DELAY_S = 0.25
MAX_DELAY_S = 4.0


class DatabaseOutage(DatabaseUnavailable):
    """The database did not answer for longer than the wait."""


async def record_patiently(
    store: RunStore,
    run: TrainingRun,
    batch: AnswersToRecord,
    max_pairs: int | None,
    *,
    wait_s: float,
    latest: TrainingRun,
    clock: Callable[[], float] = time.monotonic,
) -> TrainingRun:
    """`record_or_skip_unstorable` retried while the database is unavailable, for up to `wait_s`.
    `latest` is the run as the last record left it (what is safe, for the message)."""
    started = clock()
    delay = FIRST_DELAY_S
    while True:
        try:
            return await asyncio.to_thread(
                record_or_skip_unstorable,
                store,
                run,
                batch.results,
                batch.usage,
                max_pairs,
                batch.key,
            )
        except DatabaseUnavailable as exc:
            waited = clock() - started
            if waited + delay > wait_s:
                raise DatabaseOutage(outage_message(latest, waited, str(exc))) from None
        await asyncio.sleep(delay)
        delay = min(MAX_DELAY_S, delay * 2)


def outage_message(run: TrainingRun, waited_s: float, problem: str) -> str:
    # The store's own advice (check DMFLOW_DATABASE_URL...) is for a database that was
    # never reached; this one answered before, so only its reason is kept.
    reason = problem.split(": check ")[0].rstrip(".")
    return (
        f"the database did not answer for {waited_s:.0f} s ({reason}); "
        f"{run.processed_chunks} of {run.total_chunks} chunks are recorded and safe: "
        f"run `dmflow recover {short(run.id)}` once the database is back"
    )
