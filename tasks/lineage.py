"""Let go of task results a flow has consumed."""

from __future__ import annotations

from typing import Any

from prefect.context import FlowRunContext
from prefect.utilities.collections import visit_collection


def forget_results(*results: Any) -> None:
    """Drop the flow run's links from these task results to their task runs' states.

    For lineage, Prefect keeps in the flow run's context a link from every task result,
    and from each of its direct parts, to a copy of its state, for as long as the flow
    run lasts: two tasks per batch of chunks made that grow with the dataset. Once a
    batch is recorded its results feed no other task, so their links can go. The walk
    is the one Prefect makes when it links them (`link_state_to_result`, depth 1).
    """
    context = FlowRunContext.get()
    if context is None:
        return
    links = context.run_results

    def unlink(part: Any) -> Any:
        links.pop(id(part), None)
        return part

    for result in results:
        visit_collection(result, visit_fn=unlink, max_depth=1)
