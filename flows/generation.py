"""Phase 1: `generate_training_data(run_id)` - questions for every chunk, resumable.

The chunk ledger is the source of truth for what is done: a resumed run skips
every chunk already recorded, and each batch is recorded in one transaction,
so a run killed at any moment loses at most the batches in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    aupdate_progress_artifact,
)

from dmflow.chunks import Chunk, open_chunk_source
from dmflow.errors import ConcurrentUpdate
from dmflow.generation.factory import build_generator
from dmflow.models import TrainingRun
from dmflow.params import RunParams
from dmflow.settings import Settings
from dmflow.status import Phase, RunStatus
from dmflow.store.base import RunStore, fenced_run
from flows.events import open_flow_store
from flows.heartbeat import heartbeat
from flows.hooks import phase_failure_hook
from tasks.generation import generate_batch

PROGRESS_EVERY_S = 1.0

_on_failure = phase_failure_hook(Phase.GENERATION)


def _summary_markdown(run: TrainingRun, skipped: dict[str, int], capped: bool) -> str:
    lines = [
        f"# Generation of run `{run.id}`",
        "",
        f"- dataset: `{run.dataset}`",
        f"- chunks: {run.processed_chunks} of {run.total_chunks} processed",
        f"- pairs: {run.pair_count}" + (" (stopped at the max_pairs cap)" if capped else ""),
        f"- skipped chunks: {sum(skipped.values())}",
    ]
    lines += [f"  - {reason}: {count}" for reason, count in sorted(skipped.items())]
    if run.usage:
        lines += ["", "| usage | value |", "| --- | --- |"]
        lines += [f"| {key} | {value:g} |" for key, value in sorted(run.usage.items())]
    return "\n".join(lines)


@flow(
    name="generate-training-data",
    flow_run_name="generate-{run_id}",
    on_failure=[_on_failure],
    on_crashed=[_on_failure],
    on_cancellation=[_on_failure],
)
async def generate_training_data(run_id: UUID, attempt: int | None = None) -> dict[str, Any]:
    """Generate question/chunk pairs for every chunk not yet in the run's ledger."""
    logger = get_run_logger()
    settings = Settings()
    store = open_flow_store()
    try:
        run = fenced_run(store, run_id, attempt)
        if run.status is not RunStatus.GENERATING:
            if run.status is RunStatus.GENERATED or run.status.phase is Phase.TRAINING:
                logger.info("run %s is already %s: nothing to generate", run.id, run.status.value)
                return {"run_id": str(run.id), "pairs": run.pair_count, "status": run.status}
            raise ConcurrentUpdate(run.id, run.status.value, run.attempt)
        return await _generate(run, store, settings)
    finally:
        store.close()


async def _generate(run: TrainingRun, store: RunStore, settings: Settings) -> dict[str, Any]:
    logger = get_run_logger()
    params = RunParams.model_validate(run.params)
    source = await asyncio.to_thread(open_chunk_source, run.dataset, settings)
    run = await asyncio.to_thread(store.update_progress, run, total_chunks=source.total)
    recorded = await asyncio.to_thread(store.recorded_chunk_ids, run.id)
    generator = build_generator(params, settings)
    logger.info(
        "generating for %s: %d chunks, %d already recorded, generator %s, batches of %d",
        run.dataset,
        source.total,
        len(recorded),
        generator.name,
        params.batch_size,
    )
    progress_id = await acreate_progress_artifact(
        progress=100.0 * run.processed_chunks / max(1, source.total),
        key=f"generation-progress-{run.id}",
        description=f"Chunks processed for run {run.id} ({run.dataset})",
    )
    latest = run
    in_flight: set[asyncio.Task[TrainingRun]] = set()
    last_progress = 0.0

    async def settle(block_until_below: int) -> None:
        nonlocal latest, last_progress
        while len(in_flight) >= max(1, block_until_below) or (block_until_below == 0 and in_flight):
            done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                in_flight.discard(finished)
                recorded_run = finished.result()  # a failed batch fails the phase here
                if recorded_run.processed_chunks >= latest.processed_chunks:
                    latest = recorded_run
            if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                await aupdate_progress_artifact(
                    progress_id, 100.0 * latest.processed_chunks / max(1, source.total)
                )

    batches: Iterator[list[Chunk]] = source.batches(params.batch_size, skip=recorded)
    async with heartbeat(store, run):
        try:
            index = 0
            while latest.pair_count < params.max_pairs:
                chunks = await asyncio.to_thread(next, batches, None)
                if chunks is None:
                    break
                index += 1
                label = f"{index}-{chunks[0].id}"
                in_flight.add(
                    asyncio.create_task(
                        generate_batch(generator, store, run, chunks, params.max_pairs, label)
                    )
                )
                await settle(settings.generation_batches_in_flight)
            await settle(0)
        except BaseException:
            for pending in in_flight:
                pending.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise

    run = await asyncio.to_thread(store.get_run, run.id)
    capped = run.pair_count >= params.max_pairs
    if capped:
        logger.info("stopped at the max_pairs cap of %d pairs", params.max_pairs)
        run = await asyncio.to_thread(
            store.update_progress, run, params_patch={"max_pairs_reached": True}
        )
    await aupdate_progress_artifact(
        progress_id, 100.0 * run.processed_chunks / max(1, source.total)
    )
    skipped = await asyncio.to_thread(store.skipped_reasons, run.id)
    run = await asyncio.to_thread(store.transition, run, RunStatus.GENERATED)
    await acreate_markdown_artifact(
        markdown=_summary_markdown(run, skipped, capped),
        key=f"generation-summary-{run.id}",
        description=f"Generation summary for run {run.id}",
    )
    logger.info(
        "generated %d pairs from %d of %d chunks (%d skipped)",
        run.pair_count,
        run.processed_chunks,
        run.total_chunks,
        sum(skipped.values()),
    )
    return {
        "run_id": str(run.id),
        "status": run.status.value,
        "chunks": run.processed_chunks,
        "total_chunks": run.total_chunks,
        "pairs": run.pair_count,
        "skipped": skipped,
        "max_pairs_reached": capped,
        "usage": run.usage,
    }
