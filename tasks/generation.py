"""Generation's task: ask the generator for a batch of chunks. (What the batches finish
is recorded by the phase's recorder, not as a task run: `dmflow.phases.recorder`.)"""

from __future__ import annotations

import asyncio

from prefect import State, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Cancelled

from dmflow.chunks import Chunk
from dmflow.generation.answers import Answers
from dmflow.generation.base import QuestionGenerator


@task(name="generate-questions", task_run_name="generate-{label}", cache_policy=NO_CACHE)
async def generate_questions(
    generator: QuestionGenerator, chunks: list[Chunk], answers: Answers, label: str
) -> State[None] | None:
    """Questions for each chunk of the batch, or the reason it was skipped, put in the
    answers chunk by chunk as they finish (nothing is returned: a result would be kept
    by Prefect for as long as the flow run lasts)."""
    try:
        await generator.generate(chunks, answers)
    except asyncio.CancelledError:
        # The phase stopped this batch (another one failed, or a signal came): it ends
        # Cancelled, not Crashed, which reads as an infrastructure failure. The phase
        # that cancelled it waits for it and goes on failing.
        return Cancelled(message="stopped: the generation phase ended before this batch")
    return None
