"""What every question generator promises."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from dmflow.chunks import Chunk
from dmflow.errors import DmflowError
from dmflow.models import TrainingRun
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


class QuestionGenerator(Protocol):
    name: str

    async def generate(self, chunks: Sequence[Chunk], answers: Answers) -> None:
        """Questions for each chunk, put in `answers` as soon as the chunk is done (each
        request is counted there as soon as it is sent), whatever happens to the batch
        after. A chunk whose output stays unusable is skipped with its reason; one the
        endpoint never answered has no result (`answers.give_up`); `GenerationFailed`
        only for failures of the whole run."""
        ...
