"""Running a flow from a command: pointed at Prefect, quiet, interruptible, watched.

`launch` is the one sequence `run`, `recover` and `demo` share: point at the Prefect
server, quiet Prefect's console logs (the UI keeps them), run the flow in this process
with a status line fed from the database, and word an interrupt with where the run
stands.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from dmflow import interrupts
from dmflow.deeplake_support import start_importing_deeplake
from dmflow.errors import DatabaseUnavailable
from dmflow.models import TrainingRun
from dmflow.run_ids import short
from dmflow.status import RunStatus
from flows.cli.console import err, out, store
from flows.cli.prefect_address import point_at_prefect
from flows.runtime import settle_imported_objects
from flows.views import chunks_done, unusable_replies

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

STATUS_EVERY_S = 1.0


class Interrupted(Exception):
    """The command was interrupted by a signal; the message says where the run stands."""


class WatchedRun:
    """The run a command's flow drives: known by id, or found once as the newest run of
    its dataset created after the command started (the flow creates it)."""

    def __init__(self, *, run_id: UUID | None = None, dataset: str | None = None) -> None:
        self.run_id = run_id
        self.dataset = dataset
        self.since = datetime.now(UTC) - timedelta(seconds=5)

    def current(self) -> TrainingRun | None:
        if self.run_id is not None:
            return store().get_run(self.run_id)
        newest = store().list_runs(dataset=self.dataset, limit=1)
        if newest and newest[0].created_at and newest[0].created_at >= self.since:
            self.run_id = newest[0].id
            return newest[0]
        return None


def describe(run: TrainingRun) -> str:
    """The status line's text."""
    if run.status is RunStatus.GENERATING:
        line = f"generating questions: {chunks_done(run)} chunks, {run.pair_count} pairs"
        unusable = unusable_replies(run.usage)
        return f"{line}, {unusable}" if unusable else line
    if run.status is RunStatus.TRAINING:
        job = f" (job {run.deeplake_job_id})" if run.deeplake_job_id else ""
        return f"training Deep Memory on {run.pair_count} pairs{job}"
    return f"run {run.status.value}"


class StatusLine(threading.Thread):
    """A status line on a terminal, fed once a second from the database (the source of
    truth) while the flow runs."""

    def __init__(self, watched: WatchedRun) -> None:
        super().__init__(name="dmflow-progress", daemon=True)
        self.watched = watched
        self.stopped = threading.Event()

    def run(self) -> None:
        with err.status("starting the training run") as line:
            while not self.stopped.wait(STATUS_EVERY_S):
                try:
                    run = self.watched.current()
                except DatabaseUnavailable:
                    continue  # the flow reports it, once it has waited for it
                if run is not None:
                    line.update(describe(run))

    def __enter__(self) -> StatusLine:
        if err.is_terminal:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.is_alive():
            self.join(5)


def launch(
    start: Callable[[], Coroutine[Any, Any, State[Any]]], watched: WatchedRun, *, verbose: bool
) -> State[Any]:
    """Run the flow `start()` begins in this process; return its final state."""
    store()  # a database that cannot be reached fails here, before Prefect starts
    ui = point_at_prefect()
    if not verbose:  # our status line and outcome instead of Prefect's log lines (the UI
        # keeps them); its crash reports too: the outcome says what happened and what to do.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    call = start()  # imports Prefect and the flow
    settle_imported_objects()
    # Each flow opens its dataset first thing: deeplake's import (~1 s of CPU) overlaps
    # the flow run's creation, which mostly waits for the server.
    start_importing_deeplake()
    with StatusLine(watched):
        state = run_interruptibly(call, watched)
    flow_run_id = state.state_details.flow_run_id
    if flow_run_id:
        out.print(f"Prefect UI: {ui.flow_run(flow_run_id)}", highlight=False)
    return state


def run_interruptibly(call: Coroutine[Any, Any, State[Any]], watched: WatchedRun) -> State[Any]:
    """`asyncio.run(call)`, where Ctrl-C (SIGINT to the whole process group), SIGTERM and
    SIGHUP end the flow as an interrupt: its task is cancelled (a clean unwinding, not an
    exception at an arbitrary point of Prefect's engine), Prefect marks its flow runs
    Crashed and the phase's hook fails the run with what happened and how to resume. A
    second signal exits at once."""
    from prefect.exceptions import TerminationSignal

    from flows.interruption import signals_cancel

    async def main() -> State[Any]:
        with signals_cancel(asyncio.current_task()):
            return await call

    try:
        with signals_cancel(None, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
            state = asyncio.run(main())
    except (KeyboardInterrupt, TerminationSignal, asyncio.CancelledError) as exc:
        if isinstance(exc, TerminationSignal):
            interrupts.note(exc.signal)
        if interrupts.received() is None:
            raise  # not a signal of ours: nothing to word
    how = interrupts.received()
    if how is not None:
        run = watched.current()
        where = "" if run is None else f": run {run.id} is {_where_it_stands(run)}"
        raise Interrupted(f"interrupted ({how}){where}")
    return state


def _where_it_stands(run: TrainingRun) -> str:
    resume = f"; resume with `dmflow recover {short(run.id)}`" if run.status.is_failed else ""
    return f"{run.status.value} at {chunks_done(run)} chunks{resume}"
