"""Recovery: resume a failed run at the right phase, and the sweep that finds them.

generating_failed -> generating (resume: only chunks not in the ledger) -> train
training_failed   -> training   (re-attach to a running job, or submit anew)
generated         -> train
completed         -> nothing to do
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect import flow, get_client, get_run_logger
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run as current_flow_run

from dmflow.errors import RunStillActive
from dmflow.models import TrainingRun
from dmflow.params import RunParams
from dmflow.settings import Settings
from dmflow.status import RunStatus
from flows.events import open_flow_store
from flows.hooks import mark_phase_failed, parent_failure_hook
from flows.training_run import drive, resume_point

_ALIVE = {StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED}


def heartbeat_age_s(run: TrainingRun) -> float | None:
    if run.heartbeat_at is None:
        return None
    return (datetime.now(UTC) - run.heartbeat_at).total_seconds()


async def flow_run_is_alive(flow_run_id: UUID | None) -> bool:
    """Whether Prefect still runs (or is about to run) the flow run driving a run."""
    if flow_run_id is None:
        return False
    async with get_client() as client:
        try:
            flow_run = await client.read_flow_run(flow_run_id)
        except Exception:  # deleted or unknown flow run: nobody drives it
            return False
    return flow_run.state is not None and flow_run.state.type in _ALIVE


async def is_stale(run: TrainingRun, settings: Settings) -> bool:
    age = heartbeat_age_s(run)
    if age is not None and age < settings.stale_after_s:
        return False
    return not await flow_run_is_alive(run.flow_run_id)


async def reconcile(run: TrainingRun, settings: Settings) -> TrainingRun | None:
    """Mark an active run that nobody drives any more as failed in its phase."""
    if not run.status.is_active or not await is_stale(run, settings):
        return None
    age = heartbeat_age_s(run)
    message = (
        f"the run's process stopped without reporting (no heartbeat for "
        f"{'ever' if age is None else f'{age:.0f} s'}, flow run not running): "
        "killed, out of memory or its machine lost"
    )
    mark_phase_failed(run.status.phase, run.id, run.attempt, message)
    return run


@flow(
    name="recover-training-run",
    flow_run_name="recover-{run_id}",
    on_failure=[parent_failure_hook],
    on_crashed=[parent_failure_hook],
    on_cancellation=[parent_failure_hook],
)
async def recover_training_run(run_id: UUID) -> dict[str, Any]:
    """Resume a run at its phase: failed generation, failed training, or waiting to train."""
    logger = get_run_logger()
    settings = Settings()
    store = open_flow_store()
    try:
        run = store.get_run(run_id)
        if run.status is RunStatus.COMPLETED:
            logger.info("run %s is already completed: nothing to recover", run.id)
            return {
                "run_id": str(run.id),
                "status": run.status.value,
                "recovered": False,
                "message": "already completed: nothing to do",
            }
        if run.status.is_active:
            if not await is_stale(run, settings):
                raise RunStillActive(run.id, run.status.value, heartbeat_age_s(run))
            await reconcile(run, settings)
            run = store.get_run(run.id)
        flow_run_id = UUID(str(current_flow_run.id)) if current_flow_run.id else None
        params = RunParams.model_validate(run.params)
        run = resume_point(store, run, flow_run_id)
        logger.info("recovering run %s from %s (attempt %d)", run.id, run.status.value, run.attempt)
        run = await drive(
            run,
            store,
            train=params.train
            or run.status.phase.value == "training"
            or run.status is RunStatus.GENERATED,
        )
        return {
            "run_id": str(run.id),
            "status": run.status.value,
            "recovered": True,
            "metrics": run.metrics,
        }
    finally:
        store.close()


@flow(name="delete-failed-run", flow_run_name="delete-{run_id}")
def delete_failed_run(run_id: UUID) -> dict[str, Any]:
    """Delete a failed run with its pairs and chunk ledger; any other run is refused."""
    store = open_flow_store()
    try:
        deleted = store.delete_failed_run(run_id)
    finally:
        store.close()
    get_run_logger().info(
        "deleted run %s (%s, %d pairs)", deleted.id, deleted.status.value, deleted.pair_count
    )
    return {"run_id": str(deleted.id), "status": deleted.status.value, "pairs": deleted.pair_count}


@flow(name="recover-failed-runs")
async def recover_failed_runs(limit: int = 200) -> dict[str, Any]:
    """The sweep: mark dead runs failed, recover failed runs within the attempt budget
    with exponential backoff, and report the runs left for a person."""
    logger = get_run_logger()
    settings = Settings()
    store = open_flow_store()
    reconciled: list[str] = []
    recovered: list[str] = []
    waiting: list[str] = []
    over_budget: list[str] = []
    try:
        for run in store.list_runs(limit=limit):
            if run.status.is_active and await reconcile(run, settings):
                reconciled.append(str(run.id))
        for run in store.list_runs(limit=limit):
            if not run.status.is_failed:
                continue
            if run.attempt >= settings.recovery_attempt_budget:
                over_budget.append(str(run.id))
                continue
            since = (datetime.now(UTC) - run.updated_at).total_seconds() if run.updated_at else 0
            if since < settings.recovery_backoff_s * 2**run.attempt:
                waiting.append(str(run.id))
                continue
            try:
                await recover_training_run(run.id)
                recovered.append(str(run.id))
            except Exception as exc:  # one run's failure is its own; sweep the rest
                logger.warning("recovery of run %s failed: %s", run.id, exc)
    finally:
        store.close()
    for run_id in over_budget:
        logger.warning(
            "run %s failed %d times: left failed for a person (dmflow show %s)",
            run_id,
            settings.recovery_attempt_budget,
            run_id,
        )
    return {
        "reconciled": reconciled,
        "recovered": recovered,
        "waiting": waiting,
        "over_budget": over_budget,
    }
