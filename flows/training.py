"""Phase 2: `train_deep_memory(run_id)` - train on the run's pairs, never losing the job.

The job id is stored the moment it exists. A resumed run whose job is still
pending or training re-attaches and polls; a failed or unknown job is
submitted anew from the stored pairs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact

from dmflow import lifecycle, resources
from dmflow.errors import ConcurrentUpdate
from dmflow.models import TrainingPair, TrainingRun
from dmflow.params import RunParams
from dmflow.settings import Settings
from dmflow.status import Phase, RunStatus
from dmflow.store.base import RunStore, fenced_run
from dmflow.training.base import (
    DeepMemoryTrainer,
    JobState,
    JobStatus,
    TrainerUnavailable,
    TrainingError,
)
from dmflow.training.evaluation import split_by_chunk
from dmflow.training.factory import build_trainer
from dmflow.training.recall_rows import recall_rows
from flows.events import flow_store
from flows.heartbeat import heartbeat
from flows.hooks import phase_failure_hook
from flows.names import training_name
from tasks.training import job_status, submit_job

_on_failure = phase_failure_hook(Phase.TRAINING)

Split = tuple[list[TrainingPair], list[TrainingPair]]


def recall_markdown(run: TrainingRun, metrics: dict[str, Any]) -> str:
    lines = [
        f"# Deep Memory training of run `{run.id}`",
        "",
        f"- dataset: `{run.dataset}`",
        f"- job: `{run.deeplake_job_id}` ({metrics.get('trainer', '?')} trainer)",
        f"- pairs: {metrics.get('train_pairs', '?')} trained, "
        f"{metrics.get('eval_pairs', '?')} held out",
        "",
        "| recall | before | after | change |",
        "| --- | --- | --- | --- |",
    ]
    for key, was, now, change in recall_rows(metrics):
        lines.append(f"| {key.removeprefix('recall')} | {was} | {now} | {change} |")
    if metrics.get("before") and not metrics.get("after"):
        lines += [
            "",
            "`after`: the managed service does not report recall to dmflow; the figures above "
            "are the base embeddings' recall on the held-out questions.",
        ]
    return "\n".join(lines)


def training_pairs(store: RunStore, run: TrainingRun, params: RunParams) -> list[TrainingPair]:
    """The run's pairs; with `include_previous_runs`, also those of the dataset's earlier
    completed runs (a question/chunk pair counts once)."""
    runs = [run]
    if params.include_previous_runs:
        earlier = store.list_runs(dataset=run.dataset, limit=1000)
        runs += [r for r in earlier if r.status is RunStatus.COMPLETED and r.id != run.id]
    seen: set[tuple[str, str]] = set()
    pairs: list[TrainingPair] = []
    for source in runs:
        for page in store.iter_pairs(source.id):
            for pair in page:
                key = (pair.question_text, pair.chunk_id)
                if key not in seen:
                    seen.add(key)
                    pairs.append(pair)
    return pairs


async def _poll(
    trainer: DeepMemoryTrainer, job_id: str, intervals: list[float], timeout_s: float
) -> JobStatus:
    logger = get_run_logger()
    deadline = time.monotonic() + timeout_s
    checks = 0
    while True:
        status = await job_status(trainer, job_id)
        if not status.state.is_running:
            return status
        if time.monotonic() > deadline:
            await asyncio.to_thread(trainer.cancel, job_id)
            raise TrainingError(
                f"Deep Memory job {job_id} was still {status.state.value} after "
                f"{timeout_s:g} s: it was cancelled; recover the run to submit it again"
            )
        logger.info("job %s is %s (%s %%)", job_id, status.state.value, status.progress)
        await asyncio.sleep(intervals[min(checks, len(intervals) - 1)])
        checks += 1


@flow(
    name="train-deep-memory",
    flow_run_name=training_name,
    on_failure=[_on_failure],
    on_crashed=[_on_failure],
    on_cancellation=[_on_failure],
)
async def train_deep_memory(
    run_id: UUID, attempt: int | None = None, driver: UUID | None = None, preflight: bool = True
) -> TrainingRun:
    """Train Deep Memory on the run's pairs, evaluate it, complete the run.

    `attempt` and `driver` (the parent flow run) fence the run, as in generation: of two
    flow runs reaching a `generated` run, the one whose compare-and-set moves it to
    `training` trains it. `preflight=False`: the caller ran training's preflight moments
    ago (a new run)."""
    logger = get_run_logger()
    store = flow_store()
    run = fenced_run(store, run_id, attempt)
    if run.status is RunStatus.COMPLETED and lifecycle.driven_by(run, driver):
        logger.info("run %s is already completed", run.id)
        return run
    if run.status is RunStatus.GENERATED:
        run = store.transition(run, RunStatus.TRAINING, flow_run_id=driver)
    elif run.status is not RunStatus.TRAINING or not lifecycle.driven_by(run, driver):
        raise ConcurrentUpdate(run.id, run.status.value, run.attempt)
    async with heartbeat(store, run):
        return await _train(run, store, resources.settings(), preflight)


async def _reattachable_job(trainer: DeepMemoryTrainer, job_id: str | None) -> str | None:
    """The stored job if it is still pending or training; None when it must be submitted anew."""
    if job_id is None:
        return None
    logger = get_run_logger()
    try:
        previous = await asyncio.to_thread(trainer.status, job_id)
    except TrainerUnavailable:
        raise  # the job may well be running: never submit a second one blind
    except TrainingError as exc:
        logger.warning("stored job %s cannot be found (%s): submitting anew", job_id, exc)
        return None
    if previous.state is JobState.FAILED:
        logger.info("job %s failed (%s): submitting anew", job_id, previous.error)
        return None
    logger.info("re-attaching to job %s (%s)", job_id, previous.state.value)
    return job_id


async def _submit(
    trainer: DeepMemoryTrainer, store: RunStore, run: TrainingRun, params: RunParams
) -> tuple[TrainingRun, Split]:
    pairs = await asyncio.to_thread(training_pairs, store, run, params)
    if not pairs:
        raise TrainingError("the run has no pairs to train on: its generation made none")
    split = train, held = split_by_chunk(pairs)
    get_run_logger().info("submitting %d pairs (%d held out for evaluation)", len(train), len(held))
    job_id = await submit_job(trainer, run.dataset, train, held)
    run = await asyncio.to_thread(store.update_progress, run, deeplake_job_id=job_id)
    return run, split


async def _train(
    run: TrainingRun, store: RunStore, settings: Settings, preflight: bool
) -> TrainingRun:
    params = RunParams.model_validate(run.params)
    trainer = build_trainer(params, settings)
    if preflight or params.embedder is None:
        embedder = await asyncio.to_thread(trainer.preflight, run.dataset)
    else:
        embedder = params.embedder
    job_id = await _reattachable_job(trainer, run.deeplake_job_id)
    split: Split | None = None
    if job_id is None:
        run, split = await _submit(trainer, store, run, params)
        assert run.deeplake_job_id is not None
        job_id = run.deeplake_job_id
    intervals = params.poll_intervals_s or list(
        getattr(trainer, "default_poll_intervals_s", (5.0, 10.0, 30.0))
    )
    status = await _poll(trainer, job_id, intervals, params.training_timeout_s)
    if status.state is JobState.FAILED:
        raise TrainingError(f"Deep Memory job {job_id} failed: {status.error}")
    metrics = {**status.metrics, "job_id": job_id, "embedder": embedder}
    if "before" not in metrics:
        # The service does not evaluate for us: report recall with the base embeddings.
        if split is None:  # re-attached: the pairs were not read this time
            split = split_by_chunk(await asyncio.to_thread(training_pairs, store, run, params))
        train, held = split
        metrics.update(await asyncio.to_thread(trainer.baseline, run.dataset, held))
        metrics["train_pairs"] = len(train)
    return await _complete(store, run, metrics)


async def _complete(store: RunStore, run: TrainingRun, metrics: dict[str, Any]) -> TrainingRun:
    run = await asyncio.to_thread(store.update_progress, run, metrics=metrics)
    run = await asyncio.to_thread(store.transition, run, RunStatus.COMPLETED)
    await acreate_markdown_artifact(
        markdown=recall_markdown(run, metrics),
        key=f"training-summary-{run.id}",
        description=f"Recall before and after Deep Memory for run {run.id}",
    )
    before = metrics.get("before", {}).get("recall@10")
    after = metrics.get("after", {}).get("recall@10")
    get_run_logger().info("run %s completed: recall@10 %s -> %s", run.id, before, after)
    return run
