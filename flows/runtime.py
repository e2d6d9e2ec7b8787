"""Process-level care for programs that run Prefect flows."""

from __future__ import annotations

import gc
import sys


def release_stray_worker_threads() -> None:
    """Let the interpreter exit after flows ran in this process (`dmflow demo` and the
    test session hung at exit): see `stop_idle_anyio_worker_threads`."""
    if "prefect" not in sys.modules:
        return  # no flow ran (`dmflow runs`): nothing started AnyIO's threads
    from tasks.prefect_private import stop_idle_anyio_worker_threads

    stop_idle_anyio_worker_threads()


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
