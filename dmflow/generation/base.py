"""What every question generator promises."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from uuid import UUID, uuid4

from dmflow.chunks import Chunk
from dmflow.errors import DmflowError
from dmflow.models import ChunkResult

if TYPE_CHECKING:
    from dmflow.generation.harvest import Harvest


class GenerationFailed(DmflowError):
    """A failure of the whole run, not of one chunk: bad key, every request failing."""


@dataclass
class GeneratedBatch:
    results: list[ChunkResult]
    """One result per input chunk, in input order: done with questions, or skipped."""
    usage: dict[str, float] = field(default_factory=dict)
    """Requests, tokens and estimated cost spent on this batch."""
    key: UUID = field(default_factory=uuid4)
    """Recorded with it: its usage counts once, however often a retry records it."""


class QuestionGenerator(Protocol):
    name: str

    async def generate(
        self, chunks: Sequence[Chunk], harvest: Harvest | None = None
    ) -> GeneratedBatch:
        """Questions for each chunk. A chunk whose output stays unusable is skipped with
        its reason; `GenerationFailed` only for failures of the whole run. With a
        `harvest`, each chunk's result goes there as soon as it is done and each request
        is counted there as soon as it is sent, whatever happens to the batch after."""
        ...
