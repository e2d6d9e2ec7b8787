"""Training tasks: submitting a Deep Memory job and checking on it."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State

from dmflow.models import TrainingPair
from dmflow.training.base import DeepMemoryTrainer, JobStatus, TrainerUnavailable, TrainingError
from tasks.prefect_private import result_now


def worth_retrying(task: object, task_run: object, state: State) -> bool:
    """A refused token or a missing job stays refused; a silent or failing service may not."""
    error = result_now(state)
    if isinstance(error, TrainerUnavailable):
        return True
    return not isinstance(error, TrainingError)


# No retries: a submission that may have reached the service must not be repeated
# blindly; the flow stores the job id the moment it exists and re-attaches.
@task(name="submit-deep-memory-job", cache_policy=NO_CACHE)
async def submit_job(
    trainer: DeepMemoryTrainer,
    dataset: str,
    train_pairs: list[TrainingPair],
    eval_pairs: list[TrainingPair],
) -> str:
    return await asyncio.to_thread(trainer.submit, dataset, train_pairs, eval_pairs)


@task(
    name="check-deep-memory-job",
    task_run_name="check-{job_id}",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 5, 10],
    retry_condition_fn=worth_retrying,
)
async def job_status(trainer: DeepMemoryTrainer, job_id: str) -> JobStatus:
    return await asyncio.to_thread(trainer.status, job_id)
