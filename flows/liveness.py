"""Whether an active run still has a driver: the lifecycle's rule, fed with what Prefect knows."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.objects import StateType

from dmflow import lifecycle
from dmflow.models import TrainingRun
from dmflow.settings import Settings

_ALIVE = {StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED}


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


async def liveness(run: TrainingRun, settings: Settings) -> lifecycle.Liveness:
    """Prefect is asked only when the heartbeat is stale."""
    now = datetime.now(UTC)
    alive = lifecycle.heartbeat_is_stale(run, now, settings) and await flow_run_is_alive(
        run.flow_run_id
    )
    return lifecycle.liveness(run, now, settings, flow_run_alive=alive)
