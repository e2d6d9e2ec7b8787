"""Signals that end a flow, delivered as a cancellation of the flow's asyncio task.

Prefect's own SIGTERM handler raises `TerminationSignal` wherever the main thread is.
Raised inside an event-loop callback, asyncio logs the exception and drops it: a
terminated flow then went on to complete (seen in about one run in three on a loaded
machine). A cancelled task unwinds at its next `await`, every time; Prefect marks the
flow runs Crashed (Cancelled when its runner asked for a cancellation first) and the
phase hooks record which signal ended the run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from dmflow import interrupts
from tasks.prefect_private import subflow_sigterm_handler

_installed = False
_flow_task: asyncio.Task[Any] | None = None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if interrupts.received() is not None:
        os._exit(128 + signum)  # a second signal: the person means it, now
    interrupts.note(signum)
    task = _flow_task
    if task is None:
        raise KeyboardInterrupt  # no flow yet: nothing to unwind
    task.get_loop().call_soon_threadsafe(task.cancel)


@contextmanager
def signals_cancel(
    task: asyncio.Task[Any] | None, signals: tuple[signal.Signals, ...] = (signal.SIGTERM,)
) -> Iterator[None]:
    """While in this block, `signals` cancel `task` (before there is one they raise
    KeyboardInterrupt); a second signal exits at once.

    Inside another such block it only names the task, if the outer block had none: the
    command line's handlers cover the flow it starts. Outside the main thread, where
    Python sets no signal handler, it does nothing.
    """
    global _installed, _flow_task
    if _installed:
        naming = _flow_task is None and task is not None
        if naming:
            _flow_task = task
        try:
            yield
        finally:
            if naming:
                _flow_task = None
        return
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _installed, _flow_task = True, task
    previous = {sig: signal.signal(sig, _on_signal) for sig in signals}
    try:
        with subflow_sigterm_handler(_on_signal):
            yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _installed, _flow_task = False, None
