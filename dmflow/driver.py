"""Who drives a run: the process working on it, recorded beside its heartbeat.

A run's driver is a host, a process id and that process's start time (a pid alone
can be reused). On the driver's own host, whether it is still running is known at
once; elsewhere only the heartbeat can tell.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from dmflow import lifecycle
from dmflow.lifecycle import Liveness
from dmflow.models import TrainingRun
from dmflow.settings import Settings
from dmflow.status import Phase
from dmflow.store.base import RunStore

START_TIME_TOLERANCE = timedelta(seconds=2)


@dataclass(frozen=True)
class Driver:
    host: str
    pid: int
    started_at: datetime | None
    """When the process started (None where the OS does not say)."""

    def as_lease(self) -> tuple[str, int, datetime | None]:
        return self.host, self.pid, self.started_at

    @classmethod
    def current(cls) -> Driver:
        return cls(socket.gethostname(), os.getpid(), process_start_time(os.getpid()))


def enter_phase(
    store: RunStore, run_id: UUID, phase: Phase, *, attempt: int | None, flow_run_id: UUID | None
) -> TrainingRun:
    """`RunStore.enter_phase` leased to this process (its host, pid and start time)."""
    return store.enter_phase(
        run_id,
        phase,
        attempt=attempt,
        flow_run_id=flow_run_id,
        lease=Driver.current().as_lease(),
    )


def create_leased_run(
    store: RunStore,
    dataset: str,
    *,
    user_id: UUID | None,
    params: Mapping[str, Any],
    flow_run_id: UUID | None,
) -> TrainingRun:
    """`RunStore.create_run` leased to this process from its first moment: a kill -9
    right after leaves a run whose driver is known gone, recoverable at once."""
    return store.create_run(
        dataset,
        user_id=user_id,
        params=params,
        flow_run_id=flow_run_id,
        lease=Driver.current().as_lease(),
    )


def process_exists(pid: int) -> bool:
    """Whether a process with this id runs on this host (another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _boot_time() -> datetime | None:
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith("btime "):
                    return datetime.fromtimestamp(int(line.split()[1]), UTC)
    except OSError:
        return None
    return None


def process_start_time(pid: int) -> datetime | None:
    """The start time of process `pid` on this host; None if there is no such process or the
    OS does not say (Linux's /proc is read)."""
    boot = _boot_time()
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name (field 2) may hold spaces: count fields after its ')'.
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if boot is None or len(fields) < 20:
        return None
    ticks = int(fields[19])  # field 22 of /proc/PID/stat: start time in clock ticks
    return boot + timedelta(seconds=ticks / os.sysconf("SC_CLK_TCK"))


def is_gone(host: str | None, pid: int | None, started_at: datetime | None) -> bool | None:
    """True when the recorded driver is known to have ended: it ran on this host and no
    process with its pid and start time runs now. None when this host cannot tell (another
    host, or no driver recorded)."""
    if host is None or pid is None or host != socket.gethostname():
        return None
    if not process_exists(pid):
        return True
    return started_at_matches(pid, started_at) is False


def started_at_matches(pid: int, started_at: datetime | None) -> bool | None:
    """Whether process `pid` is the one that started at `started_at` (a pid can be
    reused); None when either start time is unknown."""
    running_since = process_start_time(pid)
    if started_at is None or running_since is None:
        return None
    return abs(running_since - started_at) <= START_TIME_TOLERANCE


def run_liveness(run: TrainingRun, settings: Settings, now: datetime | None = None) -> Liveness:
    """The lifecycle's verdict on an active run, with what this host can tell about its
    driver (gone, or unknown elsewhere). Reads only."""
    gone = is_gone(run.driver_host, run.driver_pid, run.driver_started_at)
    return lifecycle.judge_liveness(run, now or datetime.now(UTC), settings, driver_gone=gone)
