"""Phase 1 as a Prefect subflow: `generate_training_data(run_id)`.

The engine is `dmflow.phases.generation`; this flow enters the phase (the one decision
whether it may work on the run), runs the engine with Prefect steps, and records the
phase's failure through its hooks.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from prefect import flow

from dmflow import resources
from dmflow.driver import enter_phase
from dmflow.models import TrainingRun
from dmflow.phases.generation import generate
from dmflow.status import Phase, RunStatus
from flows.events import store_emitting_events
from flows.hooks import phase_failure_hook
from flows.names import generation_name
from flows.steps import PrefectSteps

_on_failure = phase_failure_hook(Phase.GENERATION)


@flow(
    name="generate-training-data",
    flow_run_name=generation_name,
    on_failure=[_on_failure],
    on_crashed=[_on_failure],
    on_cancellation=[_on_failure],
)
async def generate_training_data(
    run_id: UUID, attempt: int | None = None, owner_flow_run: UUID | None = None
) -> TrainingRun:
    """Generate question/chunk pairs for every chunk not yet in the run's ledger.

    `attempt` and `owner_flow_run` (the parent flow run) fence the run: a newer attempt or another
    flow run owns it, and this subflow refuses to touch it."""
    store = store_emitting_events()
    steps = PrefectSteps()
    run = await asyncio.to_thread(
        enter_phase, store, run_id, Phase.GENERATION, attempt=attempt, flow_run_id=owner_flow_run
    )
    if run.status is not RunStatus.GENERATING:
        steps.log.info("run %s is already %s: nothing to generate", run.id, run.status.value)
        return run
    return await generate(run, store, resources.settings(), steps)
