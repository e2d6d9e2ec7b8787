"""What generation keeps alive is bounded by its window, not by the dataset's size.

Measured with tracemalloc (live Python objects, not RSS) at the end of the phase's
asking, before it finishes, for a small and a ten times larger dataset. Two checks:
the larger one may leave no more bytes behind than a bound well under what one object
per batch would add, and no line of code may own many more live objects after it (one
small object per chunk, however small, shows there as 2,700 more).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prefect.events.clients import NullEventsClient
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

import dmflow.phases.generation as generation_phase
from dmflow.deeplake_support import import_deeplake
from dmflow.status import RunStatus
from dmflow.store.postgres import PostgresRunStore
from flows.generation import generate_training_data

SMALL, LARGE = 300, 3000
BATCH = 8
"""Small batches: a leak of one object per batch shows as 337 of them."""
BOUND = 512 * 1024
"""194 bytes a chunk, 1.5 KB a batch, for the larger dataset's 2,700 more chunks.
Measured, the larger run leaves ~155 KB more: what Prefect keeps for each of its 337
more task runs (~460 bytes) until the flow run ends."""
MORE_OBJECTS_AT_ONE_LINE = 1350
"""Half the larger dataset's extra chunks. The most measured is 388 (Prefect's objects
for each task run, one per batch, kept until the flow run ends)."""


@pytest.fixture
def nothing_sent_to_prefect() -> Iterator[None]:
    """Prefect's events client keeps up to hundreds of sent but unconfirmed events
    (thousands of objects, ~2 MB) for as long as its server takes to confirm them:
    measured, that buffer made the result whatever the server's speed was. A client
    that drops events keeps none, and log records are not sent to the server (its log
    worker, shared by the process, never emptied after some earlier tests: each measure
    waited 10 s for it). The rest of the run is unchanged."""
    EventsWorker.set_client_override(NullEventsClient)
    try:
        with temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: False}):
            yield
    finally:
        EventsWorker.set_client_override(None)


def _dataset(path: Path, chunks: int) -> str:
    deeplake = import_deeplake()
    from deeplake.constants import DEFAULT_VECTORSTORE_TENSORS

    dataset = deeplake.empty(str(path), overwrite=True, verbose=False)
    with dataset:
        for spec in DEFAULT_VECTORSTORE_TENSORS:
            dataset.create_tensor(**dict(spec))
        dataset.extend(
            {
                "id": [f"chunk-{n:06d}" for n in range(chunks)],
                "text": [
                    f"Part {n} explains how generator{n} yields values to its caller and "
                    f"how the iterator protocol resumes frame{n} after each yield."
                    for n in range(chunks)
                ],
                "metadata": [{} for _ in range(chunks)],
                "embedding": np.ones((chunks, 8), np.float32),
            }
        )
    return str(path)


def _sent_to_prefect(within_s: float = 10.0) -> None:
    """Events queued for Prefect's server (dropped here) are Prefect's buffer, as large
    as the server is slow: each measure first gives its worker up to `within_s` to send
    them. A worker that never empties its queue is waited for no longer: a daemon thread
    waits, so it cannot hold the test or the interpreter's exit."""
    waiter = threading.Thread(target=EventsWorker.instance().wait_until_empty, daemon=True)
    waiter.start()
    waiter.join(within_s)


def _not_deeplake(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    """What deeplake's read cache holds is left out: whole storage chunks, larger for a
    larger dataset up to deeplake's chunk size, and bounded by it."""
    return snapshot.filter_traces(
        [
            tracemalloc.Filter(False, "*/deeplake/*"),
            tracemalloc.Filter(False, tracemalloc.__file__),
        ]
    )


def _measure() -> tracemalloc.Snapshot:
    _sent_to_prefect()
    gc.collect()
    return _not_deeplake(tracemalloc.take_snapshot())


def _grown(after: tracemalloc.Snapshot, before: tracemalloc.Snapshot) -> tuple[int, dict[str, int]]:
    """Bytes more in all, and objects more at each line of code."""
    by_line = after.compare_to(before, "lineno")
    return (
        sum(stat.size_diff for stat in by_line),
        {str(stat.traceback[0]): stat.count_diff for stat in by_line},
    )


@pytest.mark.usefixtures("nothing_sent_to_prefect")
def test_live_memory_left_by_the_asking_does_not_grow_with_the_dataset(
    flow_env: dict[str, str],
    store: PostgresRunStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # pytest keeps every log record of a test for its report: not what a run keeps.
    caplog.set_level(logging.WARNING, logger="prefect")
    at_finish: list[tracemalloc.Snapshot] = []
    finish: Callable[..., Awaitable[Any]] = generation_phase._finish

    async def measured_finish(*args: Any, **kwargs: Any) -> Any:
        at_finish.append(_measure())
        return await finish(*args, **kwargs)

    monkeypatch.setattr(generation_phase, "_finish", measured_finish)
    warmup = _dataset(tmp_path / "warmup", 16)  # Prefect's client and caches, made once
    # The first sized run warms what is made once per shape of run: not measured.
    # Every dataset is made before tracing starts: what making one leaves behind is in no
    # snapshot, and it is made at full speed (traced, making them was 40 % of the test).
    sizes = (SMALL, SMALL, LARGE)
    paths = [_dataset(tmp_path / f"ds{n}", size) for n, size in enumerate(sizes)]
    tracemalloc.start()
    try:
        asyncio.run(generate_training_data(store.create_run(warmup).id))
        grown: dict[int, tuple[int, dict[str, int]]] = {}
        # Uncapped: the default cap (5,000 pairs) stopped the larger run at ~1,250 chunks.
        for path, size in zip(paths, sizes, strict=True):
            run = store.create_run(
                path, params={"generator": "local", "batch_size": BATCH, "max_pairs": 10**6}
            )
            before = _measure()
            asyncio.run(generate_training_data(run.id))
            done = store.get_run(run.id)
            assert done.status is RunStatus.GENERATED and done.processed_chunks == size
            grown[size] = _grown(at_finish[-1], before)
    finally:
        tracemalloc.stop()
    (small_bytes, small_objects), (large_bytes, large_objects) = grown[SMALL], grown[LARGE]
    assert large_bytes - small_bytes < BOUND, (small_bytes, large_bytes)
    more_objects = {
        line: large_objects.get(line, 0) - small_objects.get(line, 0) for line in large_objects
    }
    growing = {line: n for line, n in more_objects.items() if n >= MORE_OBJECTS_AT_ONE_LINE}
    assert not growing, growing
