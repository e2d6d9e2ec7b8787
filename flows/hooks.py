"""State hooks that write a phase's failed status when its subflow fails, crashes or is
cancelled. Prefect runs them child-first; a hook that raises is only logged."""

from __future__ import annotations

import logging
import signal
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.schemas.objects import FlowRun, State
from prefect.exceptions import TerminationSignal
from prefect.flows import FlowStateHook

from dmflow import interrupts, lifecycle
from dmflow.errors import DmflowError
from dmflow.status import Phase
from dmflow.store.base import RunStore
from flows.events import flow_store

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


def _signal_behind(state: Any) -> str | None:
    """The signal that crashed a flow run: noted by the command line, or the exception
    Prefect turned it into."""
    if interrupts.received() is not None:
        return interrupts.received()
    try:
        result = state.result(raise_on_failure=False, _sync=True)
    except Exception:
        return None
    if isinstance(result, TerminationSignal):
        return interrupts.name(result.signal)
    if isinstance(result, KeyboardInterrupt):
        return interrupts.name(signal.SIGINT)
    return None


def failure_text(store: RunStore, run_id: UUID, state: Any) -> str:
    """The error a failed run is left with: for a signal, what happened and how to resume."""
    how = _signal_behind(state)
    if how is not None and (state.is_crashed() or state.is_cancelled()):
        return lifecycle.interrupted_message(store.get_run(run_id), how)
    return error_text(state)


def phase_failure_hook(phase: Phase) -> Hook:
    def hook(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
        parameters = flow_run.parameters or {}
        run_id = UUID(str(parameters["run_id"]))
        attempt = parameters.get("attempt")
        driver = UUID(str(parameters["driver"])) if parameters.get("driver") else None
        try:
            store = flow_store()
            lifecycle.fail_phase(
                store, run_id, phase, attempt, failure_text(store, run_id, state), driver
            )
        except DmflowError:
            logger.exception("could not record the failure of run %s", run_id)
            raise

    hook.__name__ = f"mark_{phase.value}_failed"
    return hook


def parent_failure_hook(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """For the parent flows: fail the run they drive in the phase the database says it is
    in. A phase status written by a subflow's own hook is never overwritten."""
    store = flow_store()
    run = store.find_run_by_flow_run_id(flow_run.id)
    if run is not None:
        lifecycle.fail_active_run(store, run, failure_text(store, run.id, state))
