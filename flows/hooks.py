"""State hooks that write a phase's failed status when its subflow fails, crashes or is
cancelled. Prefect runs them child-first; a hook that raises is only logged."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.schemas.objects import FlowRun, State
from prefect.flows import FlowStateHook

from dmflow.errors import ConcurrentUpdate, DmflowError
from dmflow.status import Phase, RunStatus
from flows.events import open_flow_store

logger = logging.getLogger("dmflow.hooks")

Hook = FlowStateHook[..., Any]


def error_text(state: Any) -> str:
    """The exception behind a final state, as `Type: message`, else the state's message."""
    try:
        # _sync: hooks of async flows run inside the event loop, where result() would
        # otherwise hand back a coroutine.
        result = state.result(raise_on_failure=False, _sync=True)
    except Exception:  # a missing result must not hide the failure
        result = None
    if isinstance(result, BaseException):
        text = str(result).strip()
        return f"{type(result).__name__}: {text}" if text else type(result).__name__
    return str(state.message or state.name or "the flow run ended without a message")


def mark_phase_failed(phase: Phase, run_id: UUID, attempt: int | None, message: str) -> bool:
    """Move the run from the phase's active status to its failed one. False when the run
    is elsewhere (already failed, moved on, or taken over by a newer attempt)."""
    active, failed = RunStatus.active_status_of(phase), RunStatus.failed_status_of(phase)
    store = open_flow_store()
    try:
        run = store.get_run(run_id)
        if run.status is not active or (attempt is not None and run.attempt != attempt):
            logger.info(
                "run %s is %s at attempt %s: not marking it %s",
                run_id,
                run.status.value,
                run.attempt,
                failed.value,
            )
            return False
        try:
            store.transition(run, failed, error_message=message[:4000])
        except ConcurrentUpdate:
            return False
        return True
    finally:
        store.close()


def phase_failure_hook(phase: Phase) -> Hook:
    def hook(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
        parameters = flow_run.parameters or {}
        run_id = UUID(str(parameters["run_id"]))
        attempt = parameters.get("attempt")
        try:
            mark_phase_failed(phase, run_id, attempt, error_text(state))
        except DmflowError:
            logger.exception("could not record the failure of run %s", run_id)
            raise

    hook.__name__ = f"mark_{phase.value}_failed"
    return hook


def mark_active_run_failed(flow_run_id: UUID, message: str) -> bool:
    """For the parent flow: fail the run it drives in the phase the database says it is
    in. A phase status written by a subflow's own hook is never overwritten."""
    store = open_flow_store()
    try:
        run = store.find_run_by_flow_run_id(flow_run_id)
    finally:
        store.close()
    if run is None or not run.status.is_active:
        return False
    return mark_phase_failed(run.status.phase, run.id, run.attempt, message)


def parent_failure_hook(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    mark_active_run_failed(flow_run.id, error_text(state))
