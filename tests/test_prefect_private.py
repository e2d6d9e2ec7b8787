"""Each private Prefect (and AnyIO) surface dmflow uses (`tasks/prefect_private.py`),
held to what dmflow relies on: an upgrade that changes one fails here, by name."""

from __future__ import annotations

import asyncio
import signal
import threading
from types import FrameType

import anyio.to_thread
from prefect.states import Completed, Failed
from prefect.utilities.engine import capture_sigterm

from tasks.prefect_private import (
    result_now,
    stop_idle_anyio_worker_threads,
    subflow_sigterm_handler,
)


def test_result_now_reads_a_state_inside_a_running_event_loop() -> None:
    refused = ValueError("refused")

    async def inside_a_loop() -> tuple[object, object]:
        return result_now(Completed(data=5)), result_now(Failed(data=refused))

    assert asyncio.run(inside_a_loop()) == (5, refused)


def _ours(signum: int, frame: FrameType | None) -> None:
    return None


def test_the_flow_engine_keeps_the_sigterm_handler_put_in_its_place() -> None:
    before = signal.signal(signal.SIGTERM, _ours)
    try:
        with subflow_sigterm_handler(_ours), capture_sigterm():  # what every engine enters
            kept = signal.getsignal(signal.SIGTERM)
        with capture_sigterm():  # without it, Prefect installs its raising handler
            replaced = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert kept is _ours
    assert replaced is not _ours


def test_idle_anyio_worker_threads_of_a_loop_that_never_ends_stop_when_told() -> None:
    from anyio._backends._asyncio import WorkerThread

    # Like Prefect's loop threads: a loop whose root task runs until the process exits.
    loop = asyncio.new_event_loop()
    ended = asyncio.Event()
    threading.Thread(target=loop.run_until_complete, args=(ended.wait(),), daemon=True).start()
    try:

        async def use_a_worker() -> None:
            await anyio.to_thread.run_sync(lambda: None)

        asyncio.run_coroutine_threadsafe(use_a_worker(), loop).result(10)
        workers = [t for t in threading.enumerate() if isinstance(t, WorkerThread)]
        assert workers
        stop_idle_anyio_worker_threads()
        for worker in workers:
            worker.join(2)  # idle ones stop by themselves only after 10 s
        assert [t for t in workers if t.is_alive()] == []
    finally:
        loop.call_soon_threadsafe(ended.set)
