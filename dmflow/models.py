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


class TrainingMetrics(BaseModel):
    """What training measured and used, in the run's `metrics` column. A trainer's own
    extras (the adapter's path, the service's progress) are kept as they come, and rows
    written before this model read as they were."""

    model_config = ConfigDict(frozen=True, extra="allow")

    before: dict[str, float] = Field(default_factory=dict)
    """recall@k of the base embeddings on the held-out pairs."""
    after: dict[str, float] = Field(default_factory=dict)
    """recall@k with the trained model; empty when the trainer reports none (the managed
    service evaluates on its side)."""
    train_pairs: int | None = None
    eval_pairs: int | None = None
    """Held out of training, for the recall figures."""
    trainer: str | None = None
    job_id: str | None = None
    embedder: str | None = None
    """What embedded the questions: the dataset's embedder, resolved when the run began."""
    train_seconds: float | None = None

    def stored(self) -> dict[str, Any]:
        """As the `metrics` column holds it: JSON, without the facts not known."""
        return self.model_dump(mode="json", exclude_none=True)


DROPPED_PREFIX = "questions_dropped_"


class RunUsage(BaseModel):
    """What generation spent, in the run's `usage` column: summed by every record (each
    record's counts are added once, by its key). Drops by the cleaning are counted as
    `questions_dropped_<reason>` extras."""

    model_config = ConfigDict(frozen=True, extra="allow")

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replies: int = 0
    """Replies the model gave (usable or not)."""
    replies_unusable: int = 0
    replies_malformed: int = 0
    """Replies with no question in them at all."""
    chunks: int = 0
    """Chunks the local generator asked (it sends no requests)."""
    cost_usd: float = 0.0
    """Estimated from the configured prices per 1,000 tokens."""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def unusable_share(self) -> float | None:
        """Unusable replies of all replies, once there are replies."""
        return self.replies_unusable / self.replies if self.replies else None

    @property
    def dropped(self) -> dict[str, int]:
        """The cleaning's drops by reason, as the cleaning words it."""
        return {
            key.removeprefix(DROPPED_PREFIX).replace("_", " "): int(value)
            for key, value in (self.model_extra or {}).items()
            if key.startswith(DROPPED_PREFIX) and value
        }

    def counted(self) -> dict[str, float]:
        """Every count that is not zero, by its stored name."""
        return {key: value for key, value in self.model_dump().items() if value}


class RunFacts(BaseModel):
    """What dmflow found about a run, in its `facts` column (`params` stays what the user
    asked for)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    embedder: str | None = None
    """The embedder resolved for the dataset when the run began (its questions are
    embedded with it)."""
    coverage: dict[str, Any] | None = None
    """What the run's chunks cover of the dataset (`dmflow.coverage`), once generated."""
    max_pairs_reached: bool = False
    """The max_pairs cap stopped generation."""


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
    metrics: TrainingMetrics | None = None
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
    """What the user asked for (`RunParams`)."""
    facts: RunFacts = Field(default_factory=RunFacts)
    usage: RunUsage = Field(default_factory=RunUsage)
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
