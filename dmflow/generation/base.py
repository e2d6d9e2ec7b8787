"""What every question generator promises."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from uuid import UUID, uuid4

from dmflow.chunks import Chunk
from dmflow.errors import DmflowError
from dmflow.models import ChunkResult, TrainingRun
from dmflow.run_ids import short

if TYPE_CHECKING:
    from dmflow.generation.answers import Answers


class GenerationFailed(DmflowError):
    """A failure of the whole run, not of one chunk: bad key, every request failing."""


class ChunksUnanswered(GenerationFailed):
    """Chunks the LLM endpoint never answered, even when asked again: the run resumes
    with them."""

    def __init__(self, run: TrainingRun, chunks: int, reason: str) -> None:
        self.chunks = chunks
        super().__init__(
            f"{chunks} chunks got no answer from the LLM endpoint, even when asked again "
            f"({reason}) at {run.processed_chunks}/{run.total_chunks} chunks: resume with "
            f"`dmflow recover {short(run.id)}`"
        )


@dataclass
class GeneratedBatch:
    results: list[ChunkResult]
    """One result per input chunk, in input order: done with questions, or skipped."""
    usage: dict[str, float] = field(default_factory=dict)
    """Requests, tokens and estimated cost spent on this batch."""
    key: UUID = field(default_factory=uuid4)
    """Recorded with it: its usage counts once, however often a retry records it."""
    unanswered: list[Chunk] = field(default_factory=list)
    """Chunks the endpoint never answered (transport failures): no result, asked again."""


class QuestionGenerator(Protocol):
    name: str

    async def generate(
        self, chunks: Sequence[Chunk], answers: Answers | None = None
    ) -> GeneratedBatch:
        """Questions for each chunk. A chunk whose output stays unusable is skipped with
        its reason; one the endpoint never answered has no result (it is in `unanswered`,
        and in `answers`); `GenerationFailed` only for failures of the whole run. With
        `answers`, each chunk's result goes there as soon as it is done and each request
        is counted there as soon as it is sent, whatever happens to the batch after."""
        ...
