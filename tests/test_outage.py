"""The endpoint breaker on its own: when an outage starts, who may send, when it ends."""

from __future__ import annotations

import asyncio

import pytest

from dmflow.generation.outage import EndpointBreaker, EndpointOutage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_failures_below_the_threshold_count_against_their_chunks() -> None:
    breaker = EndpointBreaker(threshold=3, wait_s=60)
    assert breaker.failed("503", probe=False) is True
    assert breaker.failed("503", probe=False) is True
    breaker.answered()  # an answer in between: unlucky, not down
    assert breaker.failed("503", probe=False) is True
    assert not breaker.is_down


def test_an_outage_admits_one_probe_at_a_time_and_ends_at_the_first_answer() -> None:
    async def scenario() -> tuple[bool, bool, list[bool]]:
        clock = Clock()
        breaker = EndpointBreaker(threshold=2, wait_s=60, probe_every_s=0.5, clock=clock)
        breaker.answered()
        breaker.failed("503", probe=False)
        tripping = breaker.failed("503", probe=False)  # the one that shows the outage
        waiting = [asyncio.create_task(breaker.admit()) for _ in range(3)]
        await asyncio.sleep(0.05)
        nobody_yet = not any(w.done() for w in waiting)
        clock.now += 0.5
        await asyncio.sleep(0.6)  # the waiters wake at the probe time
        probes = [w.result() for w in waiting if w.done()]
        breaker.answered()
        await asyncio.wait_for(asyncio.gather(*waiting), 5)
        return tripping, nobody_yet, probes

    tripping, nobody_yet, probes = asyncio.run(scenario())
    assert tripping is False  # tries during an outage do not count
    assert nobody_yet
    assert probes == [True]  # exactly one probe went out


def test_an_outage_longer_than_the_wait_raises_with_the_last_problem() -> None:
    async def scenario() -> None:
        clock = Clock()
        breaker = EndpointBreaker(threshold=1, wait_s=10, clock=clock)
        breaker.answered()
        breaker.failed("503 service unavailable", probe=False)
        clock.now += 11
        await breaker.admit()

    with pytest.raises(EndpointOutage, match=r"for 11 s \(503 service unavailable\)"):
        asyncio.run(scenario())


def test_an_endpoint_never_answered_is_given_30_s_not_the_whole_wait() -> None:
    async def scenario() -> None:
        clock = Clock()
        breaker = EndpointBreaker(threshold=1, wait_s=300, clock=clock)
        breaker.failed("connection refused", probe=False)
        clock.now += 30
        await breaker.admit()

    with pytest.raises(EndpointOutage, match="connection refused"):
        asyncio.run(scenario())
