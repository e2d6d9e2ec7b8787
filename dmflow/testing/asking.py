"""Asking a generator for a few chunks outside a run, as tests and benchmarks do."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dmflow.chunks import Chunk
from dmflow.generation.answers import Answers
from dmflow.generation.base import QuestionGenerator
from dmflow.models import ChunkResult, RunUsage, TrainingPair


@dataclass
class Asked:
    results: list[ChunkResult]
    """One per answered chunk, in the order the chunks were given."""
    usage: RunUsage
    unanswered: list[Chunk]
    """Chunks the endpoint never answered."""

    def pairs(self) -> list[TrainingPair]:
        return [
            TrainingPair(
                question_text=question, chunk_id=result.chunk_id, chunk_preview=result.chunk_preview
            )
            for result in self.results
            for question in result.questions
        ]


async def ask(generator: QuestionGenerator, chunks: Sequence[Chunk]) -> Asked:
    """What `generator` puts in the answers for `chunks` (what a run would record)."""
    answers = Answers()
    await generator.generate(chunks, answers)
    taken = answers.take()
    order = {chunk.id: n for n, chunk in enumerate(chunks)}
    results = sorted(taken.results, key=lambda result: order[result.chunk_id])
    return Asked(results, RunUsage.model_validate(taken.usage), answers.take_unanswered())
