"""Generation's two steps: ask the generator for a batch of chunks, and record what the
batches in flight have finished. The record step waits out a database that does not
answer (up to DMFLOW_DB_OUTAGE_WAIT_S) with the questions it was given, so a retry never
pays for the LLM requests again."""

from __future__ import annotations

import asyncio

from prefect import State, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Cancelled

from dmflow.chunks import Chunk
from dmflow.generation.answers import Answers
from dmflow.generation.base import GeneratedBatch, QuestionGenerator
from dmflow.generation.patience import record_patiently
from dmflow.models import TrainingRun
from dmflow.store.base import RunStore


@task(name="generate-questions", task_run_name="generate-{label}", cache_policy=NO_CACHE)
async def generate_questions(
    generator: QuestionGenerator, chunks: list[Chunk], answers: Answers, label: str
) -> State[None] | None:
    """Questions for each chunk of the batch, or the reason it was skipped, put in the
    answers chunk by chunk as they finish (nothing is returned: a result would be kept
    by Prefect for as long as the flow run lasts)."""
    try:
        await generator.generate(chunks, answers)
    except asyncio.CancelledError:
        # The phase stopped this batch (another one failed, or a signal came): it ends
        # Cancelled, not Crashed, which reads as an infrastructure failure. The phase
        # that cancelled it waits for it and goes on failing.
        return Cancelled(message="stopped: the generation phase ended before this batch")
    return None


@task(name="record-batch", task_run_name="record-{label}", cache_policy=NO_CACHE)
async def record_batch(
    store: RunStore,
    run: TrainingRun,
    batch: GeneratedBatch,
    max_pairs: int,
    label: str,
    wait_s: float,
    latest: TrainingRun,
) -> TrainingRun:
    """Pairs, ledger rows, counters, usage and heartbeat in one transaction (replay-safe:
    chunks already in the ledger are ignored), tried again while the database does not
    answer. A fenced write (another attempt owns the run) fails at once."""
    return await record_patiently(store, run, batch, max_pairs, wait_s=wait_s, latest=latest)
