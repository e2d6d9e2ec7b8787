"""Generation's two steps: ask the generator for a batch of chunks, and record what the
batches in flight have finished. The record step retries on a database blip with the
questions it was given, so a retry never pays for the LLM requests again."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from dmflow.chunks import Chunk
from dmflow.errors import DatabaseUnavailable
from dmflow.generation.base import GeneratedBatch, QuestionGenerator
from dmflow.generation.harvest import Harvest
from dmflow.models import TrainingRun
from dmflow.store.base import RunStore, record_storable


def _database_blip(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only when the database could not be reached. A fenced write (another attempt
    owns the run) or a refused batch fails at once."""
    return isinstance(state.result(raise_on_failure=False, _sync=True), DatabaseUnavailable)


@task(name="generate-questions", task_run_name="generate-{label}", cache_policy=NO_CACHE)
async def generate_questions(
    generator: QuestionGenerator, chunks: list[Chunk], harvest: Harvest, label: str
) -> None:
    """Questions for each chunk of the batch, or the reason it was skipped, put in the
    harvest chunk by chunk as they finish (nothing is returned: a result would be kept
    by Prefect for as long as the flow run lasts)."""
    await generator.generate(chunks, harvest)


@task(
    name="record-batch",
    task_run_name="record-{label}",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=_database_blip,
)
async def record_batch(
    store: RunStore, run: TrainingRun, batch: GeneratedBatch, max_pairs: int, label: str
) -> TrainingRun:
    """Pairs, ledger rows, counters, usage and heartbeat in one transaction (replay-safe:
    chunks already in the ledger are ignored)."""
    return await asyncio.to_thread(
        record_storable, store, run, batch.results, batch.usage, max_pairs, batch.key
    )
