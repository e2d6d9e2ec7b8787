"""Whether an active run still has a driver (dmflow's own lease), and telling Prefect when
it has not, so the UI agrees."""

from __future__ import annotations

import logging
from uuid import UUID

from prefect import get_client
from prefect.states import Crashed

from dmflow import lifecycle
from dmflow.models import TrainingRun
from dmflow.store.base import RunStore

logger = logging.getLogger("dmflow.liveness")


async def fail_dead_run(store: RunStore, run: TrainingRun, reason: str) -> TrainingRun | None:
    """Fail a run found dead in its phase and, when this call failed it, crash its flow run
    in Prefect; None when someone else moved the run first."""
    failed = lifecycle.fail_active_run(store, run, reason)
    if failed is not None:
        await crash_flow_run(run.flow_run_id, reason)
    return failed


async def crash_flow_run(flow_run_id: UUID | None, reason: str) -> None:
    """Best effort: set a dead run's flow run to Crashed (a SIGKILLed process leaves it
    Running for ever). A flow run already final is left as it is."""
    if flow_run_id is None:
        return
    try:
        async with get_client() as client:
            flow_run = await client.read_flow_run(flow_run_id)
            if flow_run.state is not None and flow_run.state.is_final():
                return
            await client.set_flow_run_state(
                flow_run_id, Crashed(message=f"dmflow: {reason}"), force=True
            )
    except Exception as exc:  # the run's own status is what matters; Prefect is a mirror
        logger.warning("could not mark flow run %s Crashed: %s", flow_run_id, exc)
