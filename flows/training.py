"""Phase 2 as a Prefect subflow: `train_deep_memory(run_id)`.

The engine is `dmflow.phases.training`; this flow enters the phase (of two flow runs
reaching a `generated` run, the one that moves it to `training` trains it), runs the
engine with Prefect steps, and records the phase's failure through its hooks.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from prefect import flow

from dmflow import resources
from dmflow.driver import enter_phase
from dmflow.models import TrainingRun
from dmflow.phases.training import train
from dmflow.status import Phase, RunStatus
from flows.events import store_emitting_events
from flows.hooks import phase_failure_hook
from flows.names import training_name
from flows.steps import PrefectSteps

_on_failure = phase_failure_hook(Phase.TRAINING)


@flow(
    name="train-deep-memory",
    flow_run_name=training_name,
    on_failure=[_on_failure],
    on_crashed=[_on_failure],
    on_cancellation=[_on_failure],
)
async def train_deep_memory(
    run_id: UUID,
    attempt: int | None = None,
    owner_flow_run: UUID | None = None,
    preflight: bool = True,
) -> TrainingRun:
    """Train Deep Memory on the run's pairs, evaluate it, complete the run.

    `attempt` and `owner_flow_run` (the parent flow run) fence the run, as in generation.
    `preflight=False`: the caller ran training's preflight moments ago (a new run)."""
    store = store_emitting_events()
    steps = PrefectSteps()
    run = await asyncio.to_thread(
        enter_phase, store, run_id, Phase.TRAINING, attempt=attempt, flow_run_id=owner_flow_run
    )
    if run.status is RunStatus.COMPLETED:
        steps.log.info("run %s is already completed", run.id)
        return run
    return await train(run, store, resources.settings(), steps, preflight=preflight)
