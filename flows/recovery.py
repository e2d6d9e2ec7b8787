"""Recovery: resume a failed run at the right phase, and the sweep that finds them.

generating_failed -> generating (resume: only chunks not in the ledger) -> train
training_failed   -> training   (re-attach to a running job, or submit anew)
generated         -> train
completed         -> nothing to do
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.deployments import run_deployment
from prefect.runtime import deployment as current_deployment
from pydantic import Field

from dmflow import lifecycle, resources
from dmflow.driver import run_liveness
from dmflow.errors import RunStillActive
from dmflow.lifecycle import SweepAction
from dmflow.models import Recovery, SweepReport, TrainingRun
from dmflow.settings import Settings
from dmflow.store.base import RunStore
from dmflow.sweep_report import sweep_line, sweep_markdown
from flows.deployment_table import RECOVER_TRAINING_RUN
from flows.events import store_emitting_events
from flows.hooks import mark_run_failed_in_its_phase
from flows.interruption import signals_cancel
from flows.liveness import fail_dead_run
from flows.names import recovery_name
from flows.phases import current_flow_run_id, run_phases


async def _take_over_if_dead(store: RunStore, run: TrainingRun, settings: Settings) -> TrainingRun:
    """An active run, or one its driver is about to train, is recovered only once that
    driver is known dead: an active one is then failed in its phase first, like the
    sweep would."""
    if not (run.status.is_active or lifecycle.waits_to_train(run)):
        return run
    verdict = run_liveness(run, settings)
    if not verdict.dead:
        raise RunStillActive(run.id, run.status.value, verdict.reason)
    if not run.status.is_active:
        return run
    return await fail_dead_run(store, run, verdict.reason) or store.get_run(run.id)


@flow(
    name="recover-training-run",
    flow_run_name=recovery_name,
    on_failure=[mark_run_failed_in_its_phase],
    on_crashed=[mark_run_failed_in_its_phase],
    on_cancellation=[mark_run_failed_in_its_phase],
)
async def recover_training_run(run_id: UUID) -> Recovery:
    """Resume a run at its phase: failed generation, failed training, or waiting to train.

    Args:
        run_id: The run's id (`dmflow runs` lists them; the full id, not a prefix).
    """
    with signals_cancel(asyncio.current_task()):  # a SIGTERM ends it, every time
        logger = get_run_logger()
        store = store_emitting_events()
        run = store.get_run(run_id)
        if not run.status.is_unfinished:
            logger.info("run %s is already completed: nothing to recover", run.id)
            return Recovery(run=run, recovered=False, message="already completed: nothing to do")
        run = await _take_over_if_dead(store, run, resources.settings())
        train = lifecycle.trains_on_recovery(run)
        run = lifecycle.reopen_failed_phase(store, run, current_flow_run_id())
        logger.info("recovering run %s from %s (attempt %d)", run.id, run.status.value, run.attempt)
        run = await run_phases(run, lifecycle.phases_to_do(run, train))
        return Recovery(run=run, recovered=True, message=f"recovered: {run.status.value}")


@flow(name="delete-failed-run", flow_run_name="delete-{run_id}")
def delete_failed_run(run_id: UUID) -> TrainingRun:
    """Delete a failed run with its pairs and chunk ledger; any other run is refused.

    Args:
        run_id: The failed run's id (the full id, not a prefix).
    """
    deleted = store_emitting_events().delete_failed_run(run_id)
    get_run_logger().info(
        "deleted run %s (%s, %d pairs)", deleted.id, deleted.status.value, deleted.pair_count
    )
    return deleted


async def _recover(run: TrainingRun, report: SweepReport) -> None:
    """Served: a flow run of the recover-training-run deployment, under its concurrency
    limit, so the single-slot sweep returns at once. Elsewhere: inline."""
    if current_deployment.id is not None:
        started: Any = run_deployment(
            RECOVER_TRAINING_RUN.full_name,
            parameters={"run_id": str(run.id)},
            timeout=0,
            as_subflow=False,
            # One recovery per failure, however many sweeps see the run failed meanwhile.
            idempotency_key=f"recover-{run.id}-attempt-{run.attempt}",
        )
        await started  # a coroutine in a flow's event loop
        report.started.append(run.id)
        return
    try:
        await recover_training_run(run.id)
        report.recovered.append(run.id)
    except Exception as exc:  # one run's failure is its own; sweep the rest
        get_run_logger().warning("recovery of run %s failed: %s", run.id, exc)
        report.failed.append(run.id)


@flow(name="recover-failed-runs")
async def recover_failed_runs(limit: Annotated[int, Field(ge=1)] = 200) -> SweepReport:
    """The sweep: mark dead runs failed, recover failed runs within the attempt budget
    (DMFLOW_RECOVERY_ATTEMPT_BUDGET) once their backoff (DMFLOW_RECOVERY_BACKOFF_S x
    2^attempt) has passed, and report the runs left for a person.

    Args:
        limit: How many runs it checks, the newest first.
    """
    settings = resources.settings()
    report = await _sweep(store_emitting_events(), limit, settings)
    logger = get_run_logger()
    logger.info("%s", sweep_line(report, limit, settings))
    try:
        await acreate_markdown_artifact(
            markdown=sweep_markdown(report, limit, settings),
            key="recovery-sweep",
            description=f"Recovery sweep: {report.seen} runs checked",
        )
    except Exception as exc:  # what it did is done and logged; the card is extra
        logger.warning("could not publish the sweep's artifact: %s", exc)
    return report


async def _sweep(store: RunStore, limit: int, settings: Settings) -> SweepReport:
    logger = get_run_logger()
    report = SweepReport()
    runs = store.list_runs(limit=limit)
    report.seen = len(runs)
    for run in runs:
        if not run.status.is_active:
            continue
        verdict = run_liveness(run, settings)
        action = lifecycle.sweep_action(run, datetime.now(UTC), settings, verdict)
        if action is SweepAction.RECONCILE and await fail_dead_run(store, run, verdict.reason):
            report.reconciled.append(run.id)
    for run in store.list_runs(limit=limit):
        waiting = run_liveness(run, settings) if lifecycle.waits_to_train(run) else None
        action = lifecycle.sweep_action(run, datetime.now(UTC), settings, waiting)
        if action is SweepAction.RECOVER:
            await _recover(run, report)
        elif action is SweepAction.WAIT:
            report.waiting.append(run.id)
        elif action is SweepAction.OVER_BUDGET:
            report.over_budget.append(run.id)
            logger.warning(
                "run %s failed %d times: left failed for a person (dmflow show %s)",
                run.id,
                run.attempt,
                run.id,
            )
    return report
