"""Walk the phases a run still has to do: the one path the parent flow and recovery share."""

from __future__ import annotations

import asyncio
import contextlib
from uuid import UUID

from prefect import get_run_logger
from prefect.runtime import flow_run as current_flow_run

from dmflow.driver import enter_phase
from dmflow.models import TrainingRun
from dmflow.status import Phase, RunStatus
from flows.events import store_emitting_events
from flows.generation import generate_training_data
from flows.names import label_parent_flow_run
from flows.summary import progress_line, publish_summary
from flows.training import train_deep_memory

SUMMARY_ON_FAILURE_TIMEOUT_S = 2.0


async def run_phases(
    run: TrainingRun, phases: list[Phase], *, preflighted: bool = False
) -> TrainingRun:
    """Run each phase's subflow in order and return the run as the last one left it.

    `preflighted`: training's preflight already ran in this flow run (a new run), so the
    training subflow does not repeat it.
    """
    owner_flow_run = current_flow_run_id()
    if run.status is RunStatus.GENERATING:
        # Take the lease now, not when the subflow starts: a kill -9 in between would
        # leave a run no process claims, dead only once its heartbeat goes stale.
        run = await asyncio.to_thread(
            enter_phase,
            store_emitting_events(),
            run.id,
            Phase.GENERATION,
            attempt=run.attempt,
            flow_run_id=owner_flow_run,
        )
    # Only now, with the lease taken: a kill -9 during this call leaves a run its
    # driver's death makes recoverable at once.
    await label_parent_flow_run(run)
    await publish_summary(run)
    try:
        for phase in phases:
            if phase is Phase.GENERATION:
                run = await generate_training_data(
                    run.id, attempt=run.attempt, owner_flow_run=owner_flow_run
                )
            else:
                run = await train_deep_memory(
                    run.id,
                    attempt=run.attempt,
                    owner_flow_run=owner_flow_run,
                    preflight=not preflighted,
                )
            get_run_logger().info("%s", progress_line(run))
            await publish_summary(run)
    except BaseException:
        # The failed phase's hook has recorded how it failed: show it on this flow run
        # too (the log line says how to resume), in bounded time (a signal's exit waits).
        with contextlib.suppress(BaseException):
            failed = await asyncio.to_thread(store_emitting_events().get_run, run.id)
            get_run_logger().error("%s", progress_line(failed))
            await asyncio.wait_for(publish_summary(failed), SUMMARY_ON_FAILURE_TIMEOUT_S)
        raise
    return run


def current_flow_run_id() -> UUID | None:
    """The flow run this code runs in, if any."""
    return UUID(str(current_flow_run.id)) if current_flow_run.id else None
