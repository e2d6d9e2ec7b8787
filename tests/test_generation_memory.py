"""What generation keeps alive is bounded by its window, not by the dataset's size.

Measured with tracemalloc (live Python objects, not RSS) at the end of the phase's
asking, before it finishes: a dataset five times larger may leave no more behind than
a bound well under what one object per batch or per chunk would add.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

import dmflow.phases.generation as generation_phase
from dmflow.deeplake_support import import_deeplake
from dmflow.status import RunStatus
from dmflow.store.postgres import PostgresRunStore
from flows.generation import generate_training_data

SMALL, LARGE = 300, 3000
BATCH = 8
"""Small batches: a leak of one object per batch shows as 337 of them."""
BOUND = 2 * 1024 * 1024
"""777 bytes a chunk, 6 KB a batch, for the larger dataset's 2,700 more chunks (the task
results Prefect kept per batch until they were let go came to ~1.4 KB a chunk). Live
memory between two runs of the same size moves by up to ~1.4 MB (seen in CI): the
larger dataset is ten times the smaller so that a leak per chunk stands well above
that. Events and log records queued for a busy Prefect server are sent before each
measure."""


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
    """Events and log records queued for Prefect's server are Prefect's buffer, as large
    as the server is slow (3 MB once in CI, with another test file's servers busy):
    each measure first gives its workers up to `within_s` to send them. A worker that
    never empties its queue (seen once in CI) is waited for no longer: a daemon thread
    waits, so it cannot hold the test or the interpreter's exit."""
    for service in (EventsWorker, APILogWorker):
        waiter = threading.Thread(target=service.instance().wait_until_empty, daemon=True)
        waiter.start()
        waiter.join(within_s)


def _not_deeplake(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes traced outside deeplake: its read cache holds whole storage chunks, which
    are larger for a larger dataset up to deeplake's chunk size, and bounded by it."""
    kept = snapshot.filter_traces([tracemalloc.Filter(False, "*/deeplake/*")])
    return sum(stat.size for stat in kept.statistics("filename"))


def test_live_memory_left_by_the_asking_does_not_grow_with_the_dataset(
    flow_env: dict[str, str],
    store: PostgresRunStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # pytest keeps every log record of a test for its report: not what a run keeps.
    caplog.set_level(logging.WARNING, logger="prefect")
    at_finish: list[int] = []
    finish: Callable[..., Awaitable[Any]] = generation_phase._finish

    async def measured_finish(*args: Any, **kwargs: Any) -> Any:
        _sent_to_prefect()
        gc.collect()
        at_finish.append(_not_deeplake(tracemalloc.take_snapshot()))
        return await finish(*args, **kwargs)

    monkeypatch.setattr(generation_phase, "_finish", measured_finish)
    warmup = _dataset(tmp_path / "warmup", 16)  # Prefect's client and caches, made once
    tracemalloc.start()
    try:
        asyncio.run(generate_training_data(store.create_run(warmup).id))
        grown = {}
        # The first sized run warms what is made once per shape of run: not measured.
        # Every dataset made first: what making one leaves behind is in every "before".
        sizes = (SMALL, SMALL, LARGE)
        paths = [_dataset(tmp_path / f"ds{n}", size) for n, size in enumerate(sizes)]
        for path, size in zip(paths, sizes, strict=True):
            run = store.create_run(path, params={"generator": "local", "batch_size": BATCH})
            _sent_to_prefect()
            gc.collect()
            before = _not_deeplake(tracemalloc.take_snapshot())
            asyncio.run(generate_training_data(run.id))
            assert store.get_run(run.id).status is RunStatus.GENERATED
            grown[size] = at_finish[-1] - before
    finally:
        tracemalloc.stop()
    assert grown[LARGE] - grown[SMALL] < BOUND, grown
