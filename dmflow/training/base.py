"""What every Deep Memory trainer promises: a job that can be submitted, polled, cancelled."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, Field

from dmflow.errors import DmflowError
from dmflow.models import TrainingPair


class TrainingError(DmflowError):
    """Training cannot start or did not succeed; the message says what to do."""


class TrainerUnavailable(TrainingError):
    """The service did not answer in time, or answered with a server error: worth retrying."""


class JobState(StrEnum):
    PENDING = "pending"
    TRAINING = "training"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_running(self) -> bool:
        return self in (JobState.PENDING, JobState.TRAINING)


class JobStatus(BaseModel):
    job_id: str
    state: JobState
    progress: float | None = None
    """0-100 when the trainer reports it."""
    error: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


class DeepMemoryTrainer(Protocol):
    name: str

    def preflight(self, dataset: str) -> str:
        """Refuse, with a clear `TrainingError`, what cannot work, before anything is spent.
        Returns the name of the embedder the run's questions will be embedded with."""
        ...

    def baseline(self, dataset: str, eval_pairs: Sequence[TrainingPair]) -> dict[str, Any]:
        """Recall on the held-out pairs with the dataset's own embeddings (`before`), for
        trainers whose service does not evaluate."""
        ...

    def submit(
        self,
        dataset: str,
        train_pairs: Sequence[TrainingPair],
        eval_pairs: Sequence[TrainingPair],
    ) -> str:
        """Start a training job; return its id as soon as it exists."""
        ...

    def status(self, job_id: str) -> JobStatus: ...

    def cancel(self, job_id: str) -> None: ...
