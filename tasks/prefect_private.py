"""Every use of a Prefect (or AnyIO) surface that is not public, in one place.

Each can change in any release without notice. `tests/test_prefect_private.py` holds
each one to what dmflow relies on, so an upgrade that changes it fails there, by name,
and not somewhere in a run; `pyproject.toml` allows the Prefect versions those tests
passed on.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import prefect.utilities.engine as prefect_engine

SignalHandler = Callable[[int, FrameType | None], Any]


def result_now(state: Any) -> Any:
    """`state.result(raise_on_failure=False)`, also inside a running event loop: state
    hooks of async flows and retry conditions of async tasks run there, where the public
    call hands back a coroutine. Prefect's own engine passes `_sync=True` the same way."""
    return state.result(raise_on_failure=False, _sync=True)


@contextlib.contextmanager
def subflow_sigterm_handler(handler: SignalHandler) -> Iterator[None]:
    """Within this block, the SIGTERM handler Prefect's flow engine installs (and keeps,
    when it finds it already installed) is `handler`: no subflow's engine puts Prefect's
    raising handler back while the command line owns the signals."""
    previous = prefect_engine._prefect_sigterm_handler
    prefect_engine._prefect_sigterm_handler = handler  # type: ignore[assignment]
    try:
        yield
    finally:
        prefect_engine._prefect_sigterm_handler = previous


def stop_idle_anyio_worker_threads() -> None:
    """Tell AnyIO's idle worker threads to stop, as AnyIO does when their loop ends.

    Each waits for the root task of the event loop that started it, and for Prefect's
    loop threads that task never ends: a process that ran flows finished its work and
    then hung at exit, with AnyIO releases whose workers are not daemon threads."""
    try:
        from anyio._backends._asyncio import WorkerThread
    except ImportError:
        return
    for thread in threading.enumerate():
        if isinstance(thread, WorkerThread) and thread.is_alive():
            with contextlib.suppress(queue.Full):
                thread.queue.put_nowait(None)


__all__ = [
    "SignalHandler",
    "result_now",
    "stop_idle_anyio_worker_threads",
    "subflow_sigterm_handler",
]
