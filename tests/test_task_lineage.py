"""A long generation must not keep a link per batch in the flow run's context."""

from __future__ import annotations

import asyncio

from prefect import flow, task
from prefect.context import FlowRunContext

from dmflow.generation.base import GeneratedBatch
from dmflow.models import ChunkResult
from tasks.lineage import forget_results


@task
async def make_batch(n: int) -> GeneratedBatch:
    return GeneratedBatch([ChunkResult.skipped(f"c{n}", "x")], {"requests": float(n + 300)})


@flow
async def many_batches(count: int, forget: bool) -> int:
    context = FlowRunContext.get()
    assert context is not None
    for n in range(count):
        batch = await make_batch(n)
        if forget:
            forget_results(batch)
    return len(context.run_results)


def test_forgotten_results_leave_no_links(prefect_api_url: str) -> None:
    kept = asyncio.run(many_batches(20, forget=False))
    forgotten = asyncio.run(many_batches(20, forget=True))
    assert kept >= 20  # Prefect links every result: without forgetting, one per batch or more
    assert forgotten == 0
