"""Fixtures are grouped by the real system they start (see tests/fixtures/)."""

import os

# Keep every test offline and quiet, whatever the developer's environment says.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.cli",
    "tests.fixtures.datasets",
    "tests.fixtures.llm_server",
    "tests.fixtures.prefect",
]


def pytest_unconfigure(config: object) -> None:
    """Let the interpreter exit: AnyIO's worker threads are not daemon threads and
    wait for their event loop's root task, which for Prefect's loop threads never
    ends. Seen here as a test session that finished but never exited."""
    import contextlib
    import queue
    import threading

    try:
        from anyio._backends._asyncio import WorkerThread
    except ImportError:
        return
    for thread in threading.enumerate():
        if isinstance(thread, WorkerThread) and thread.is_alive():
            with contextlib.suppress(queue.Full):
                thread.queue.put_nowait(None)
