"""Process-level care for programs that run Prefect flows."""

from __future__ import annotations

import contextlib
import queue
import threading


def release_stray_worker_threads() -> None:
    """Let the interpreter exit after flows ran in this process.

    AnyIO's worker threads are not daemon threads: each waits for the root task of
    the event loop that started it, and for Prefect's loop threads that task never
    ends, so the process finished its work and then hung at exit (seen with
    `dmflow demo` and with the test session). Telling idle workers to stop is what
    AnyIO itself does when their loop ends.
    """
    try:
        from anyio._backends._asyncio import WorkerThread
    except ImportError:
        return
    for thread in threading.enumerate():
        if isinstance(thread, WorkerThread) and thread.is_alive():
            with contextlib.suppress(queue.Full):
                thread.queue.put_nowait(None)
