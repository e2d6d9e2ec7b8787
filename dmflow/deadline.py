"""A hard deadline around a blocking call that has none of its own (deeplake's client
retries connection errors forever)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dmflow.errors import DmflowError

T = TypeVar("T")


class DeadlineExceeded(DmflowError):
    """The call did not return in time; it is abandoned on a daemon thread."""


def run_with_deadline(seconds: float, what: str, call: Callable[[], T]) -> T:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name=f"deadline: {what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise DeadlineExceeded(
            f"{what}: no answer within {seconds:g} s (DMFLOW_ACTIVELOOP_REQUEST_DEADLINE_S); "
            "check the network and Activeloop's status, then retry"
        )
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value
