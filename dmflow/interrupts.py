"""Which signal interrupted this process, for the message a failed run is left with.

The command line notes the signal when it arrives; the phase's failure hook, running
in the same process as the interrupted flow, words the run's error from it.
"""

from __future__ import annotations

import signal

_NAMES = {
    signal.SIGINT: "Ctrl-C",
    signal.SIGTERM: "SIGTERM",
    signal.SIGHUP: "SIGHUP, the terminal closed",
}
_received: str | None = None


def name(signum: int) -> str:
    """How a person would call the signal."""
    return _NAMES.get(signal.Signals(signum), signal.Signals(signum).name)


def note(signum: int) -> None:
    global _received
    _received = name(signum)


def received() -> str | None:
    """How this process was interrupted, if it was."""
    return _received
