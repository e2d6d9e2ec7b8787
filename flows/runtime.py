"""Process-level care for programs that run Prefect flows."""

from __future__ import annotations

import contextlib
import gc
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


def leave_objects_to_the_exit() -> None:
    """Skip the garbage collection the interpreter runs as it shuts down.

    After a flow ran, the process holds ~200,000 objects (Prefect's and pydantic's
    models), and the collection at shutdown walked them all for ~1.3 s after the
    command had printed its outcome. Frozen objects are left to the process's exit;
    the atexit hooks (Prefect sending its last logs and events) still run.
    """
    gc.freeze()


def settle_imported_objects() -> None:
    """Leave what the imports made out of every later garbage collection.

    Modules, classes and Prefect's and pydantic's models live as long as the process;
    each full collection walked all ~200,000 of them again (0.7 s in a demo)."""
    gc.freeze()
