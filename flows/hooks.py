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
from dmflow.errors import DatabaseUnavailable, DmflowError
from dmflow.redaction import describe, scrub
from dmflow.status import Phase
from flows.events import store_emitting_events
from tasks.prefect_private import result_now

logger = logging.getLogger("dmflow.hooks")

Hook = FlowStateHook[..., Any]


def error_text(state: Any) -> str:
    """The exception behind a final state, as `Type: message`, else the state's message."""
    try:
        result = result_now(state)
    except Exception:  # a missing result must not hide the failure
        result = None
    if isinstance(result, BaseException):
        return describe(result)
    return scrub(str(state.message or state.name or "the flow run ended without a message"))


def signal_behind(state: Any) -> str | None:
    """The signal that crashed or cancelled a flow run, as a person calls it: noted by the
    command line, or the exception Prefect turned it into. None for any other end."""
    if not (state.is_crashed() or state.is_cancelled()):
        return None
    if interrupts.received() is not None:
        return interrupts.received()
    try:
        result = result_now(state)
    except Exception:
        return None
    if isinstance(result, TerminationSignal):
        return interrupts.name(result.signal)
    if isinstance(result, KeyboardInterrupt):
        return interrupts.name(signal.SIGINT)
    return None


def phase_failure_hook(phase: Phase) -> Hook:
    def hook(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
        parameters = flow_run.parameters or {}
        run_id = UUID(str(parameters["run_id"]))
        attempt = parameters.get("attempt")
        owner = parameters.get("owner_flow_run")
        owner_flow_run = UUID(str(owner)) if owner else None
        try:
            lifecycle.fail_phase(
                store_emitting_events(),
                run_id,
                phase,
                attempt,
                error_text(state),
                owner_flow_run,
                interrupted_by=signal_behind(state),
            )
        except DatabaseUnavailable as exc:
            # The database is gone (the likely cause of the failure): the run stays in its
            # phase with a driver that is gone, which `dmflow show` and the sweep see.
            logger.warning("could not record the failure of run %s: %s", run_id, exc)
        except DmflowError:
            logger.exception("could not record the failure of run %s", run_id)
            raise

    hook.__name__ = f"mark_{phase.value}_failed"
    return hook


def mark_run_failed_in_its_phase(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """For the parent flows: fail the run they drive in the phase the database says it is
    in. A phase status written by a subflow's own hook is never overwritten."""
    store = store_emitting_events()
    try:
        run = store.find_run_by_flow_run_id(flow_run.id)
    except DatabaseUnavailable as exc:
        logger.warning("could not record the failure of flow run %s: %s", flow_run.id, exc)
        return
    if run is not None:
        lifecycle.fail_active_run(
            store, run, error_text(state), interrupted_by=signal_behind(state)
        )
