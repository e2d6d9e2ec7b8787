"""What a phase engine asks of whoever runs it: its steps, its log, its reports."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from dmflow.chunks import Chunk
from dmflow.generation.answers import Answers
from dmflow.generation.base import QuestionGenerator
from dmflow.models import TrainingPair, TrainingRun
from dmflow.training.base import DeepMemoryTrainer, JobStatus

Log = logging.Logger | logging.LoggerAdapter[Any]


class Reports(Protocol):
    """Where a phase tells people how it goes."""

    @property
    def log(self) -> Log: ...

    async def progress(self, run: TrainingRun, *, force: bool = False) -> None:
        """The run's chunks processed of its total (cheap to call often)."""
        ...

    async def summary(self, key: str, markdown: str, description: str) -> None:
        """A phase's closing summary, as markdown."""
        ...


class GenerationSteps(Reports, Protocol):
    async def ask(
        self, generator: QuestionGenerator, chunks: list[Chunk], answers: Answers, label: str
    ) -> None:
        """Ask the generator for a batch; its chunks' results go into `answers`."""
        ...


class TrainingSteps(Reports, Protocol):
    async def submit(
        self,
        trainer: DeepMemoryTrainer,
        dataset: str,
        train: Sequence[TrainingPair],
        held_out: Sequence[TrainingPair],
    ) -> str:
        """Submit a Deep Memory job; its id. Never repeated blindly by the caller."""
        ...

    async def job_status(self, trainer: DeepMemoryTrainer, job_id: str) -> JobStatus: ...


class DirectSteps:
    """Every step in-process, the log to `logging`, reports kept in memory."""

    def __init__(self, log: Log | None = None) -> None:
        self._log = log or logging.getLogger("dmflow.phases")
        self.summaries: dict[str, str] = {}
        self.progress_seen: list[int] = []

    @property
    def log(self) -> Log:
        return self._log

    async def progress(self, run: TrainingRun, *, force: bool = False) -> None:
        self.progress_seen.append(run.processed_chunks)

    async def summary(self, key: str, markdown: str, description: str) -> None:
        self.summaries[key] = markdown

    async def ask(
        self, generator: QuestionGenerator, chunks: list[Chunk], answers: Answers, label: str
    ) -> None:
        await generator.generate(chunks, answers)

    async def submit(
        self,
        trainer: DeepMemoryTrainer,
        dataset: str,
        train: Sequence[TrainingPair],
        held_out: Sequence[TrainingPair],
    ) -> str:
        return await asyncio.to_thread(trainer.submit, dataset, list(train), list(held_out))

    async def job_status(self, trainer: DeepMemoryTrainer, job_id: str) -> JobStatus:
        return await asyncio.to_thread(trainer.status, job_id)
