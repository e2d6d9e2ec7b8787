"""The phase engines' steps as Prefect runs them: each ask and record a task (a unit of
retry and progress in the UI), logs to the flow run's log, reports as its artifacts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TypeVar, cast
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    aupdate_progress_artifact,
)
from prefect.utilities.annotations import quote

from dmflow.chunks import Chunk
from dmflow.generation.answers import Answers
from dmflow.generation.base import QuestionGenerator
from dmflow.models import TrainingPair, TrainingRun
from dmflow.phases.steps import Log
from dmflow.training.base import DeepMemoryTrainer, JobStatus
from tasks.generation import generate_questions
from tasks.training import job_status, submit_job

PROGRESS_EVERY_S = 1.0

_T = TypeVar("_T")


def unwalked(value: _T) -> _T:
    """`value`, `quote`d for a task's argument: Prefect walks every argument of a task
    run looking for upstream futures, into every chunk and field: the steps' arguments
    hold none, and the walk's cost grows with the batch."""
    return cast(_T, quote(value))


class PrefectSteps:
    """Made inside the flow run it reports to."""

    def __init__(self) -> None:
        self._log = get_run_logger()
        self._progress_id: UUID | None = None
        self._progress_at = 0.0

    @property
    def log(self) -> Log:
        return self._log

    async def progress(self, run: TrainingRun, *, force: bool = False) -> None:
        """The run's progress artifact, updated at most once a second unless `force`d."""
        percent = 100.0 * run.processed_chunks / max(1, run.total_chunks)
        if self._progress_id is None:
            self._progress_id = await acreate_progress_artifact(
                progress=percent,
                key=f"generation-progress-{run.id}",
                description=f"Chunks processed for run {run.id} ({run.dataset})",
            )
            self._progress_at = time.monotonic()
        elif force or time.monotonic() - self._progress_at >= PROGRESS_EVERY_S:
            self._progress_at = time.monotonic()
            await aupdate_progress_artifact(self._progress_id, percent)

    async def summary(self, key: str, markdown: str, description: str) -> None:
        await acreate_markdown_artifact(markdown=markdown, key=key, description=description)

    async def ask(
        self, generator: QuestionGenerator, chunks: list[Chunk], answers: Answers, label: str
    ) -> None:
        await generate_questions(unwalked(generator), unwalked(chunks), unwalked(answers), label)

    async def submit(
        self,
        trainer: DeepMemoryTrainer,
        dataset: str,
        train: Sequence[TrainingPair],
        held_out: Sequence[TrainingPair],
    ) -> str:
        return await submit_job(trainer, dataset, list(train), list(held_out))

    async def job_status(self, trainer: DeepMemoryTrainer, job_id: str) -> JobStatus:
        return await job_status(trainer, job_id)
