"""Data contracts between dmflow's parts. Field names are the schema's column names."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dmflow.redaction import storable
from dmflow.status import RunStatus

CHUNK_PREVIEW_CHARS = 200


class TrainingRun(BaseModel):
    """One row of `deep_memory_training_runs`."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    user_id: UUID | None = None
    dataset: str
    """DeepLake dataset path: a local directory or `hub://org/name`."""
    status: RunStatus
    total_chunks: int = 0
    """Chunks in the dataset when generation started."""
    processed_chunks: int = 0
    """Chunks in the ledger (done or skipped); counts across resumes."""
    pair_count: int = 0
    deeplake_job_id: str | None = None
    metrics: dict[str, Any] | None = None
    error_message: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    attempt: int = 0
    """Bumped by every recovery; writes carry it as a fencing token."""
    heartbeat_at: datetime | None = None
    flow_run_id: UUID | None = None
    """The Prefect flow run driving the run now."""
    params: dict[str, Any] = Field(default_factory=dict)
    usage: dict[str, Any] = Field(default_factory=dict)
    driver_host: str | None = None
    """The lease: host, process id and start time of the process driving the run."""
    driver_pid: int | None = None
    driver_started_at: datetime | None = None


class Recovery(BaseModel):
    """What a recovery did with a run."""

    run: TrainingRun
    """The run as the recovery left it."""
    recovered: bool
    """False when there was nothing to recover (a completed run)."""
    message: str


class SweepReport(BaseModel):
    """What one pass of the recovery sweep did, by run id."""

    seen: int = 0
    """Runs it looked at."""

    reconciled: list[UUID] = Field(default_factory=list)
    """Active runs found dead and marked failed in their phase."""
    recovered: list[UUID] = Field(default_factory=list)
    """Recovered in the sweep's own flow run (outside a deployment)."""
    started: list[UUID] = Field(default_factory=list)
    """Handed to the recover-training-run deployment as flow runs of their own."""
    failed: list[UUID] = Field(default_factory=list)
    """Whose recovery failed again (recorded on the run by phase)."""
    waiting: list[UUID] = Field(default_factory=list)
    """Failed too recently: recovered once the backoff has passed."""
    over_budget: list[UUID] = Field(default_factory=list)
    """Failed as often as the attempt budget allows: left for a person."""


class TrainingPair(BaseModel):
    """One (question, chunk) pair of `deep_memory_training_pairs`."""

    model_config = ConfigDict(frozen=True)

    question_text: str = Field(min_length=1)
    chunk_id: str = Field(min_length=1)
    chunk_preview: str | None = None
    relevance_score: float = 1.0


class ChunkOutcome(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"


class ChunkResult(BaseModel):
    """What generation made of one chunk: its questions, or why it was skipped."""

    model_config = ConfigDict(frozen=True)

    chunk_id: str = Field(min_length=1)
    outcome: ChunkOutcome
    questions: tuple[str, ...] = ()
    reason: str | None = None
    """Why the chunk was skipped (required for `skipped`)."""
    chunk_preview: str | None = None

    @field_validator("chunk_id", "reason", "chunk_preview", mode="before")
    @classmethod
    def _storable_text(cls, value: object) -> object:
        # A NUL or a lone surrogate (in a document, or in a model's output) would fail
        # the whole batch's transaction, and every retry of it.
        return storable(value) if isinstance(value, str) else value

    @field_validator("questions", mode="before")
    @classmethod
    def _storable_questions(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            cleaned = (storable(q).strip() if isinstance(q, str) else q for q in value)
            return tuple(q for q in cleaned if q != "")
        return value

    @model_validator(mode="after")
    def _outcome_matches(self) -> Self:
        if self.outcome is ChunkOutcome.DONE and not self.questions:
            raise ValueError("a done chunk needs at least one question; skip it with a reason")
        if self.outcome is ChunkOutcome.SKIPPED and (not self.reason or self.questions):
            raise ValueError("a skipped chunk needs a reason and no questions")
        return self

    @classmethod
    def done(cls, chunk_id: str, questions: list[str] | tuple[str, ...], text: str) -> Self:
        return cls(
            chunk_id=chunk_id,
            outcome=ChunkOutcome.DONE,
            questions=tuple(questions),
            chunk_preview=text[:CHUNK_PREVIEW_CHARS],
        )

    @classmethod
    def skipped(cls, chunk_id: str, reason: str) -> Self:
        return cls(chunk_id=chunk_id, outcome=ChunkOutcome.SKIPPED, reason=reason)

    def ledger_row(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "pair_count": len(self.questions),
        }
