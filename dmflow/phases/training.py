"""Training: submit the run's pairs to Deep Memory, never losing the job, and evaluate.

The job id is stored the moment it exists. A resumed run whose job is still pending or
training re-attaches and polls; a failed or unknown job is submitted anew from the
stored pairs.
"""

from __future__ import annotations

import asyncio
import time

from dmflow.models import TrainingMetrics, TrainingPair, TrainingRun
from dmflow.params import RunParams
from dmflow.phases.heartbeat import heartbeat
from dmflow.phases.markdown import recall_markdown
from dmflow.phases.steps import Log, TrainingSteps
from dmflow.settings import Settings
from dmflow.status import RunStatus
from dmflow.store.base import RunStore, earlier_completed_runs
from dmflow.training.base import (
    DeepMemoryTrainer,
    JobState,
    JobStatus,
    TrainerUnavailable,
    TrainingError,
)
from dmflow.training.evaluation import split_by_chunk
from dmflow.training.factory import build_trainer

Split = tuple[list[TrainingPair], list[TrainingPair]]


async def train(
    run: TrainingRun,
    store: RunStore,
    settings: Settings,
    steps: TrainingSteps,
    *,
    preflight: bool = True,
) -> TrainingRun:
    """Train a `training` run this process has entered; return it `completed`.
    `preflight=False`: the caller ran the trainer's preflight moments ago (a new run)."""
    async with heartbeat(store, run, settings):
        return await _train(run, store, settings, steps, preflight)


def training_pairs(store: RunStore, run: TrainingRun, params: RunParams) -> list[TrainingPair]:
    """The run's pairs; with `include_previous_runs`, also those of the dataset's earlier
    completed runs (a question/chunk pair counts once)."""
    runs = [run]
    if params.include_previous_runs:
        runs += earlier_completed_runs(store, run)
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


async def _train(
    run: TrainingRun, store: RunStore, settings: Settings, steps: TrainingSteps, preflight: bool
) -> TrainingRun:
    params = RunParams.model_validate(run.params)
    if params.embedder is None and run.facts.embedder is not None:
        # The embedder resolved when the run began: a recovery trains with it, or is
        # refused by the preflight when the dataset's embedder changed since.
        params = params.model_copy(update={"embedder": run.facts.embedder})
    trainer = build_trainer(params, settings)
    embedder = params.embedder
    if preflight or embedder is None:
        embedder = await asyncio.to_thread(trainer.preflight, run.dataset)
    job_id = await _reattachable_job(trainer, run.deeplake_job_id, steps.log)
    split: Split | None = None
    if job_id is None:
        run, split = await _submit(trainer, store, run, params, steps)
        assert run.deeplake_job_id is not None
        job_id = run.deeplake_job_id
    intervals = params.poll_intervals_s or list(
        getattr(trainer, "default_poll_intervals_s", (5.0, 10.0, 30.0))
    )
    status = await _poll(trainer, job_id, intervals, params.training_timeout_s, steps)
    if status.state is JobState.FAILED:
        raise TrainingError(f"Deep Memory job {job_id} failed: {status.error}")
    metrics = TrainingMetrics.model_validate(
        {**status.metrics, "job_id": job_id, "embedder": embedder}
    )
    if not metrics.before:
        # The service does not evaluate for us: report recall with the base embeddings.
        if split is None:  # re-attached: the pairs were not read this time
            split = split_by_chunk(await asyncio.to_thread(training_pairs, store, run, params))
        train_set, held = split
        baseline = await asyncio.to_thread(trainer.baseline, run.dataset, held)
        metrics = metrics.model_copy(update={**baseline, "train_pairs": len(train_set)})
    return await _complete(store, run, metrics, steps)


async def _reattachable_job(trainer: DeepMemoryTrainer, job_id: str | None, log: Log) -> str | None:
    """The stored job if it is still pending or training; None when it must be submitted anew."""
    if job_id is None:
        return None
    try:
        previous = await asyncio.to_thread(trainer.status, job_id)
    except TrainerUnavailable:
        raise  # the job may well be running: never submit a second one blind
    except TrainingError as exc:
        log.warning("stored job %s cannot be found (%s): submitting anew", job_id, exc)
        return None
    if previous.state is JobState.FAILED:
        log.info("job %s failed (%s): submitting anew", job_id, previous.error)
        return None
    log.info("re-attaching to job %s (%s)", job_id, previous.state.value)
    return job_id


async def _submit(
    trainer: DeepMemoryTrainer,
    store: RunStore,
    run: TrainingRun,
    params: RunParams,
    steps: TrainingSteps,
) -> tuple[TrainingRun, Split]:
    pairs = await asyncio.to_thread(training_pairs, store, run, params)
    if not pairs:
        raise TrainingError("the run has no pairs to train on: its generation made none")
    split = train_set, held = split_by_chunk(pairs)
    steps.log.info("submitting %d pairs (%d held out for evaluation)", len(train_set), len(held))
    job_id = await steps.submit(trainer, run.dataset, train_set, held)
    run = await asyncio.to_thread(store.update_progress, run, deeplake_job_id=job_id)
    return run, split


async def _poll(
    trainer: DeepMemoryTrainer,
    job_id: str,
    intervals: list[float],
    timeout_s: float,
    steps: TrainingSteps,
) -> JobStatus:
    deadline = time.monotonic() + timeout_s
    checks = 0
    while True:
        status = await steps.job_status(trainer, job_id)
        if not status.state.is_running:
            return status
        if time.monotonic() > deadline:
            await asyncio.to_thread(trainer.cancel, job_id)
            raise TrainingError(
                f"Deep Memory job {job_id} was still {status.state.value} after "
                f"{timeout_s:g} s: it was cancelled; recover the run to submit it again"
            )
        steps.log.info("job %s is %s (%s %%)", job_id, status.state.value, status.progress)
        await asyncio.sleep(intervals[min(checks, len(intervals) - 1)])
        checks += 1


async def _complete(
    store: RunStore, run: TrainingRun, metrics: TrainingMetrics, steps: TrainingSteps
) -> TrainingRun:
    run = await asyncio.to_thread(store.update_progress, run, metrics=metrics)
    run = await asyncio.to_thread(store.transition, run, RunStatus.COMPLETED)
    await steps.summary(
        f"training-summary-{run.id}",
        recall_markdown(run, metrics),
        f"Recall before and after Deep Memory for run {run.id}",
    )
    before, after = metrics.before.get("recall@10"), metrics.after.get("recall@10")
    steps.log.info(
        "run %s completed: recall@10 %s -> %s", run.id, _rounded(before), _rounded(after)
    )
    return run


def _rounded(recall: float | None) -> str:
    return "n/a" if recall is None else f"{recall:.3f}"
