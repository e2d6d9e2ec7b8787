"""Phase 1: `generate_training_data(run_id)` - questions for every chunk, resumable.

The chunk ledger is the source of truth for what is done: a resumed run skips
every chunk already recorded. Chunks are recorded as they finish, every 16 chunks
or second (`flows/recording.py`), each record one transaction, so a run killed at
any moment loses at most the requests in flight and the last second's answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    aupdate_progress_artifact,
)

from dmflow import lifecycle, resources
from dmflow.chunks import Chunk, open_chunk_source
from dmflow.errors import ConcurrentUpdate
from dmflow.generation.base import ChunksUnanswered, QuestionGenerator
from dmflow.generation.factory import build_generator
from dmflow.generation.harvest import Harvest, RecordingStopped
from dmflow.generation.outage import EndpointOutage
from dmflow.models import ChunkResult, TrainingRun
from dmflow.params import RunParams
from dmflow.settings import Settings
from dmflow.status import Phase, RunStatus
from dmflow.store.base import RunStore, fenced_run, record_storable
from flows.events import flow_store
from flows.heartbeat import heartbeat
from flows.hooks import phase_failure_hook
from flows.names import generation_name
from flows.recording import Recorder
from flows.summary import usage_markdown
from flows.window import Window
from tasks.generation import generate_questions

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
    return "\n".join(lines + usage_markdown(run.usage))


class Progress:
    """The run's progress artifact, updated at most once a second."""

    def __init__(self, artifact_id: UUID, total: int) -> None:
        self.artifact_id, self.total = artifact_id, max(1, total)
        self.updated_at = 0.0

    @classmethod
    async def create(cls, run: TrainingRun, total: int) -> Progress:
        artifact_id = await acreate_progress_artifact(
            progress=100.0 * run.processed_chunks / max(1, total),
            key=f"generation-progress-{run.id}",
            description=f"Chunks processed for run {run.id} ({run.dataset})",
        )
        return cls(artifact_id, total)

    async def update(self, run: TrainingRun, *, force: bool = False) -> None:
        if force or time.monotonic() - self.updated_at >= PROGRESS_EVERY_S:
            self.updated_at = time.monotonic()
            await aupdate_progress_artifact(
                self.artifact_id, 100.0 * run.processed_chunks / self.total
            )


@flow(
    name="generate-training-data",
    flow_run_name=generation_name,
    on_failure=[_on_failure],
    on_crashed=[_on_failure],
    on_cancellation=[_on_failure],
)
async def generate_training_data(
    run_id: UUID, attempt: int | None = None, driver: UUID | None = None
) -> TrainingRun:
    """Generate question/chunk pairs for every chunk not yet in the run's ledger.

    `attempt` and `driver` (the parent flow run) fence the run: a newer attempt or another
    driver owns it, and this subflow refuses to touch it."""
    store = flow_store()
    run = fenced_run(store, run_id, attempt)
    if run.status is not RunStatus.GENERATING or not lifecycle.driven_by(run, driver):
        if run.status is RunStatus.GENERATED or run.status.phase is Phase.TRAINING:  # done
            get_run_logger().info(
                "run %s is already %s: nothing to generate", run.id, run.status.value
            )
            return run
        raise ConcurrentUpdate(run.id, run.status.value, run.attempt)
    return await _generate(run, store, resources.settings())


async def _generate(run: TrainingRun, store: RunStore, settings: Settings) -> TrainingRun:
    params = RunParams.model_validate(run.params)
    source = await asyncio.to_thread(open_chunk_source, run.dataset, settings)
    run = await asyncio.to_thread(store.update_progress, run, total_chunks=source.total)
    recorded = await asyncio.to_thread(store.recorded_chunk_ids, run.id)
    generator = build_generator(params, settings)
    get_run_logger().info(
        "generating for %s: %d chunks, %d already recorded, generator %s, batches of %d",
        run.dataset,
        source.total,
        len(recorded),
        generator.name,
        params.batch_size,
    )
    progress = await Progress.create(run, source.total)
    batches = source.batches(params.batch_size, skip=recorded)
    async with heartbeat(store, run):
        run = await _record_all(
            run,
            store,
            batches,
            generator,
            params,
            Window[object](batches_in_flight(params, settings)),
            progress,
        )
    return await _finish(run, store, params, progress)


def batches_in_flight(params: RunParams, settings: Settings) -> int:
    """The setting, or more when the LLM's concurrency needs more chunks than that to keep
    every request slot busy while a batch is being recorded."""
    if params.generator != "openai":
        return settings.generation_batches_in_flight
    to_fill_slots = -(-settings.llm_concurrency // params.batch_size)
    return max(settings.generation_batches_in_flight, to_fill_slots + 1)


async def _record_all(
    run: TrainingRun,
    store: RunStore,
    batches: Iterator[list[Chunk]],
    generator: QuestionGenerator,
    params: RunParams,
    window: Window[object],
    progress: Progress,
) -> TrainingRun:
    """Generate every batch, a bounded window of them in flight, while a recorder records
    their chunks as they finish; then ask once more the chunks the endpoint never answered.
    Return the run as the last record left it."""
    settings = resources.settings()
    recorder = Recorder(store, run, params.max_pairs, progress.update, settings.db_outage_wait_s)
    recorder.start()
    try:
        await _ask(batches, generator, params, window, recorder, "")
        later = recorder.harvest.take_unanswered()
        if later and recorder.latest.pair_count < params.max_pairs:
            get_run_logger().warning(
                "%d chunks got no answer from the LLM endpoint (%s): asking them again",
                len(later),
                recorder.harvest.unanswered_reason,
            )
            again = (
                later[i : i + params.batch_size] for i in range(0, len(later), params.batch_size)
            )
            await _ask(again, generator, params, window, recorder, "again-")
    except BaseException as exc:
        await window.cancel()
        latest = await recorder.close(failed=True)
        with contextlib.suppress(Exception):  # the artifact must not hide the failure
            await progress.update(latest, force=True)  # where it stopped, not a second ago
        raise _explained(exc, recorder, latest) from None
    latest = await recorder.close(failed=False)
    return await _settle_unanswered(latest, store, recorder.harvest, params, settings)


async def _ask(
    batches: Iterator[list[Chunk]],
    generator: QuestionGenerator,
    params: RunParams,
    window: Window[object],
    recorder: Recorder,
    label: str,
) -> None:
    index = 0
    while recorder.latest.pair_count < params.max_pairs:
        chunks = await asyncio.to_thread(next, batches, None)
        if chunks is None:
            break
        index += 1
        name = f"{label}{index}-{chunks[0].id}"
        await window.add(generate_questions(generator, chunks, recorder.harvest, name))
        recorder.check()
    await window.drain()
    recorder.check()


def _explained(exc: BaseException, recorder: Recorder, latest: TrainingRun) -> BaseException:
    """The error the phase fails with: the recorder's own when recording stopped the
    asking; an LLM outage with where the run stands and how to resume it."""
    failure = recorder.failure()
    if isinstance(exc, RecordingStopped) and failure is not None:
        return failure
    if isinstance(exc, EndpointOutage):
        return EndpointOutage.at(exc, latest)
    return exc


async def _settle_unanswered(
    run: TrainingRun, store: RunStore, harvest: Harvest, params: RunParams, settings: Settings
) -> TrainingRun:
    """Chunks the endpoint did not answer even when asked again: the run cannot be
    `generated` without them. Asked again by the next attempt, unless this attempt is the
    last the sweep's budget allows: then they are given up (a poison request)."""
    left = harvest.take_unanswered()
    if not left or run.pair_count >= params.max_pairs:
        return run
    reason = harvest.unanswered_reason
    if run.attempt < max(1, settings.recovery_attempt_budget):
        raise ChunksUnanswered(run, len(left), reason)
    given_up = [
        ChunkResult.skipped(c.id, f"no answer in {run.attempt + 1} attempts: {reason}")
        for c in left
    ]
    get_run_logger().warning(
        "%d chunks got no answer in %d attempts (%s): recorded as skipped",
        len(left),
        run.attempt + 1,
        reason,
    )
    return await asyncio.to_thread(
        record_storable, store, run, given_up, {}, params.max_pairs, None
    )


async def _finish(
    run: TrainingRun, store: RunStore, params: RunParams, progress: Progress
) -> TrainingRun:
    logger = get_run_logger()
    capped = run.pair_count >= params.max_pairs
    if capped:
        logger.info("stopped at the max_pairs cap of %d pairs", params.max_pairs)
        run = await asyncio.to_thread(
            store.update_progress, run, params_patch={"max_pairs_reached": True}
        )
    await progress.update(run, force=True)
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
    return run
