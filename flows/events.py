"""Prefect events on every status change, so automations can react to them."""

from __future__ import annotations

import logging
from typing import Any, cast
from uuid import UUID

from prefect.events import emit_event

from dmflow import resources
from dmflow.models import TrainingRun
from dmflow.status import Phase, RunStatus
from dmflow.store.base import RunStore

logger = logging.getLogger("dmflow.events")


def emit_status_event(run: TrainingRun) -> None:
    """`dmflow.run.<status>` with the run as the resource."""
    try:
        emit_event(
            event=f"dmflow.run.{run.status.value}",
            resource={
                "prefect.resource.id": f"dmflow.run.{run.id}",
                "prefect.resource.name": run.dataset,
                "dmflow.dataset": run.dataset,
            },
            payload={
                "run_id": str(run.id),
                "status": run.status.value,
                "attempt": run.attempt,
                "pair_count": run.pair_count,
                "error_message": run.error_message,
            },
        )
    except Exception:  # an event that cannot be sent must not fail the run
        logger.exception("could not emit the status event of run %s", run.id)


class EventingRunStore:
    """A `RunStore` that emits an event after every status change it makes."""

    def __init__(self, inner: RunStore) -> None:
        self._inner = inner

    def transition(self, run: TrainingRun, to_status: RunStatus, **kwargs: Any) -> TrainingRun:
        moved = self._inner.transition(run, to_status, **kwargs)
        emit_status_event(moved)
        return moved

    def create_run(self, dataset: str, **kwargs: Any) -> TrainingRun:
        created = self._inner.create_run(dataset, **kwargs)
        emit_status_event(created)
        return created

    def enter_phase(self, run_id: UUID, phase: Phase, **kwargs: Any) -> TrainingRun:
        was = self._inner.get_run(run_id).status if phase is Phase.TRAINING else None
        entered = self._inner.enter_phase(run_id, phase, **kwargs)
        if entered.status is not was and was is RunStatus.GENERATED:  # it moved to training
            emit_status_event(entered)
        return entered

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def store_emitting_events() -> RunStore:
    """The process's store (see `dmflow.resources`), emitting status events."""
    return cast(RunStore, EventingRunStore(resources.store()))
