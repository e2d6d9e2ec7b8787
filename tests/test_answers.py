"""The answers: when a phase records what generation finished."""

from __future__ import annotations

import asyncio
import time

from dmflow.generation.answers import UNRECORDED_LIMIT, Answers, RecordingStopped
from dmflow.models import ChunkResult


def done(n: int) -> ChunkResult:
    return ChunkResult.done(f"c{n}", [f"What is c{n}?"], f"c{n}")


async def _told_when_recording_stops(answers: Answers, waiting: asyncio.Task[None]) -> bool:
    """A recorder that gives up tells whoever waits for room, rather than leave it waiting."""
    await answers.stop()
    try:
        await asyncio.wait_for(waiting, 5)
    except RecordingStopped:
        return True
    return False


def test_ready_at_the_chunk_count_without_waiting_for_the_time_limit() -> None:
    async def scenario() -> tuple[bool, float, int]:
        answers = Answers()

        async def produce() -> None:
            for n in range(20):
                answers.add(done(n))
                await asyncio.sleep(0.01)

        producer = asyncio.create_task(produce())
        started = time.monotonic()
        ready = await answers.ready(16, within_s=30)
        waited = time.monotonic() - started
        pending = answers.pending
        await producer
        return ready, waited, pending

    ready, waited, pending = asyncio.run(scenario())
    assert ready and pending == 16 and waited < 5


def test_ready_after_the_time_limit_with_fewer_chunks_or_only_usage() -> None:
    async def scenario(fill: str) -> tuple[bool, float]:
        answers = Answers()
        if fill == "chunks":
            answers.add(done(1))
        else:
            answers.count("requests", 1)
        started = time.monotonic()
        ready = await answers.ready(16, within_s=0.3)
        return ready, time.monotonic() - started

    for fill in ("chunks", "usage"):
        ready, waited = asyncio.run(scenario(fill))
        assert ready and 0.25 <= waited < 5, (fill, waited)


def test_take_hands_over_everything_once_and_close_ends_the_wait() -> None:
    async def scenario() -> tuple[list[str], dict[str, float], bool, bool]:
        answers = Answers()
        answers.add(done(1))
        answers.count("requests", 2)
        answers.count("requests", 1)
        batch = answers.take()
        again = answers.take()
        emptied = not again.results and not again.usage and answers.pending == 0
        asyncio.get_running_loop().call_later(0.05, answers.close)
        ready = await answers.ready(16, within_s=30)
        return [r.chunk_id for r in batch.results], batch.usage, emptied, ready

    ids, usage, emptied, ready = asyncio.run(scenario())
    assert ids == ["c1"] and usage == {"requests": 3}
    assert emptied and ready is False


def test_no_room_while_16_finished_chunks_wait_to_be_recorded() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        answers = Answers()
        for n in range(UNRECORDED_LIMIT):
            answers.add(done(n))
        taken = answers.take()  # a record is being written: still not recorded
        asking = asyncio.create_task(answers.room())
        await asyncio.sleep(0.1)
        held = not asking.done()
        await answers.recorded(len(taken.results))
        await asyncio.wait_for(asking, 5)
        # A recorder that gave up: whoever waits for room is told, not left waiting.
        for n in range(UNRECORDED_LIMIT):
            answers.add(done(n))
        waiting = asyncio.create_task(answers.room())
        await asyncio.sleep(0.05)
        stopped = await _told_when_recording_stops(answers, waiting)
        return held, asking.done(), stopped

    held, released, stopped = asyncio.run(scenario())
    assert held and released and stopped


def test_requests_in_flight_and_unrecorded_chunks_share_one_budget() -> None:
    # While a record is written, answers that arrive take the room of requests not sent:
    # the asking goes on as long as in flight + unrecorded stays under concurrency + 16.
    concurrency = 4

    async def scenario() -> tuple[int, bool, bool, bool]:
        answers = Answers()
        for n in range(UNRECORDED_LIMIT):
            answers.add(done(n))
        taken = answers.take()  # 16 chunks being recorded
        release = asyncio.Event()
        sent = 0

        async def request() -> None:
            nonlocal sent
            async with answers.sending(concurrency):
                sent += 1
                await release.wait()

        requests = [asyncio.create_task(request()) for _ in range(concurrency + 1)]
        await asyncio.sleep(0.1)
        sent_while_recording = sent  # 16 unrecorded + 4 in flight: the fifth waits
        release.set()
        await answers.recorded(len(taken.results))
        await asyncio.wait_for(asyncio.gather(*requests), 5)
        fifth_sent = sent == concurrency + 1
        for n in range(UNRECORDED_LIMIT + concurrency):
            answers.add(done(n))
        stopped_waiting = asyncio.create_task(request())
        await asyncio.sleep(0.05)
        held_when_full = not stopped_waiting.done()
        told = await _told_when_recording_stops(answers, stopped_waiting)
        return sent_while_recording, fifth_sent, held_when_full, told

    sent, fifth_sent, held_when_full, told = asyncio.run(scenario())
    assert sent == concurrency  # not 0, as when unrecorded chunks had a room of their own
    assert fifth_sent and held_when_full and told
