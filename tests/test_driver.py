"""The driver lease: is a recorded process still running on this host?"""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import timedelta

from dmflow.driver import Driver, is_gone, process_start_time


def test_this_process_is_not_gone() -> None:
    me = Driver.current()
    assert me.started_at is not None
    assert is_gone(*me.as_lease()) is False


def test_a_process_that_exited_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start_time(child.pid)
    child.wait()
    assert is_gone(socket.gethostname(), child.pid, started) is True


def test_a_reused_pid_is_told_apart_by_its_start_time() -> None:
    me = Driver.current()
    assert me.started_at is not None
    earlier = me.started_at - timedelta(hours=1)
    assert is_gone(me.host, me.pid, earlier) is True


def test_another_host_cannot_tell() -> None:
    assert is_gone("some-other-host", 1, None) is None
    assert is_gone(None, None, None) is None
