"""An endpoint outage holds the run instead of eating its chunks (a circuit breaker).

Every request asks `admit` before it is sent and reports how it went. When the last
`threshold` requests all failed for transport reasons (timeout, connection error, 429,
5xx), the endpoint is taken to be down: no request is sent but one probe at a time, at a
growing interval, and the first answer lets everything go on. Tries that fail while the
endpoint is down do not count against a chunk. An outage longer than `wait_s` ends the
phase with `EndpointOutage`: the run is failed in its phase and resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from dmflow.generation.base import GenerationFailed
from dmflow.models import TrainingRun
from dmflow.run_ids import short

logger = logging.getLogger("dmflow.generation")

FIRST_ANSWER_WAIT_S = 30.0
"""An endpoint that has not answered once since the phase started is given at most this
long: a wrong URL or a server that is not up should not hold a run for minutes."""


class EndpointOutage(GenerationFailed):
    """The LLM endpoint failed every request for longer than the outage wait."""

    def __init__(self, seconds: float, last_problem: str, where: str = "") -> None:
        self.seconds, self.last_problem = seconds, last_problem
        super().__init__(
            f"the LLM endpoint failed every request for {seconds:.0f} s ({last_problem})" + where
        )

    @classmethod
    def at(cls, outage: EndpointOutage, run: TrainingRun) -> EndpointOutage:
        """The same outage, saying where the run stopped and how to resume it."""
        return cls(
            outage.seconds,
            outage.last_problem,
            f" at {run.processed_chunks}/{run.total_chunks} chunks: resume with "
            f"`dmflow recover {short(run.id)}`",
        )


class EndpointBreaker:
    def __init__(
        self,
        *,
        threshold: int,
        wait_s: float,
        probe_every_s: float = 0.5,
        probe_every_max_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = max(1, threshold)
        self.wait_s = wait_s
        self._probe_base_s, self._probe_max_s = probe_every_s, probe_every_max_s
        self._clock = clock
        self._failures_in_a_row = 0
        self._answered_once = False
        self._down_since: float | None = None
        self._probe_delay_s = probe_every_s
        self._next_probe_at = 0.0
        self._probing = False
        self._changed: asyncio.Event | None = None
        self.last_problem = ""

    @property
    def is_down(self) -> bool:
        return self._down_since is not None

    async def admit(self) -> bool:
        """Return when a request may be sent: at once while the endpoint is up; while it
        is down, when this caller is the next probe (then True). Raises `EndpointOutage`
        once the endpoint has been down longer than the wait."""
        while self._down_since is not None:
            now = self._clock()
            limit = self.wait_s if self._answered_once else min(self.wait_s, FIRST_ANSWER_WAIT_S)
            if now - self._down_since >= limit:
                raise EndpointOutage(now - self._down_since, self.last_problem)
            if not self._probing and now >= self._next_probe_at:
                self._probing = True
                return True
            wake_at = self._down_since + limit
            if not self._probing:
                wake_at = min(wake_at, self._next_probe_at)
            changed = self._event()
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(0.0, wake_at - now))
        return False

    def answered(self) -> None:
        """The endpoint answered (whatever it said): it is up."""
        self._failures_in_a_row = 0
        self._answered_once = True
        if self._down_since is not None:
            logger.warning(
                "the LLM endpoint answers again after %.0f s: going on",
                self._clock() - self._down_since,
            )
            self._down_since = None
            self._probing = False
            self._probe_delay_s = self._probe_base_s
            self._event().set()

    def failed(self, problem: str, *, probe: bool, retry_after_s: float | None = None) -> bool:
        """A request failed for transport reasons (`probe`: it was admitted as the probe).
        True when the try counts against its chunk; False while the endpoint is down (this
        failure included, when it is the one that shows the endpoint is down)."""
        self.last_problem = problem
        now = self._clock()
        if self._down_since is not None:
            if probe and self._probing:  # the probe failed: wait longer for the next one
                self._probing = False
                self._probe_delay_s = min(self._probe_max_s, self._probe_delay_s * 2)
                delay = self._probe_delay_s
                if retry_after_s is not None:
                    delay = max(delay, min(retry_after_s, self._probe_max_s))
                self._next_probe_at = now + delay
                self._event().set()
            return False
        self._failures_in_a_row += 1
        if self._failures_in_a_row < self.threshold:
            return True
        self._down_since = now
        self._next_probe_at = now + self._probe_delay_s
        logger.warning(
            "the LLM endpoint failed %d requests in a row (%s): holding the run, asking "
            "again every few seconds for up to %.0f s",
            self._failures_in_a_row,
            problem,
            self.wait_s,
        )
        return False

    def abandoned(self, probe: bool) -> None:
        """An admitted request was neither answered nor failed (cancelled): if it was the
        probe, let another caller probe."""
        if probe and self._probing:
            self._probing = False
            self._event().set()

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed
