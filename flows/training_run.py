"""`training_run`: the parent flow people start from the UI, a schedule or the CLI.

    (new) -> generating -> generated -> training -> completed

It creates the run, or, when Prefect runs the same flow run again (the UI's
Retry, `prefect flow-run retry`, a restart after a crash), finds it by
`flow_run_id` and resumes at its phase. It has no `retries=`: a retry of the
parent would start every subflow as a new run.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.runtime import flow_run as current_flow_run

from dmflow.models import TrainingRun
from dmflow.params import RunParams
from dmflow.settings import Settings
from dmflow.status import RunStatus
from dmflow.store.base import RunStore
from dmflow.training.factory import build_trainer
from flows.events import open_flow_store
from flows.generation import generate_training_data
from flows.hooks import parent_failure_hook
from flows.training import train_deep_memory


def resume_point(store: RunStore, run: TrainingRun, flow_run_id: UUID | None = None) -> TrainingRun:
    """Move a failed run back into its phase. The recovery transition bumps `attempt`;
    as a compare-and-set it lets exactly one of two concurrent resumes win."""
    if run.status is RunStatus.GENERATING_FAILED:
        return store.transition(run, RunStatus.GENERATING, flow_run_id=flow_run_id)
    if run.status is RunStatus.TRAINING_FAILED:
        return store.transition(run, RunStatus.TRAINING, flow_run_id=flow_run_id)
    return run


async def drive(run: TrainingRun, store: RunStore, train: bool) -> TrainingRun:
    """Run the phases still to do, from wherever the run stands."""
    if run.status is RunStatus.GENERATING:
        await generate_training_data(run.id, attempt=run.attempt)
        run = store.get_run(run.id)
    if train and run.status in (RunStatus.GENERATED, RunStatus.TRAINING):
        await train_deep_memory(run.id, attempt=run.attempt)
        run = store.get_run(run.id)
    return run


async def preflight(dataset: str, params: RunParams) -> RunParams:
    """Refuse what training cannot do before generation spends anything (a local path for
    the managed trainer, no token, a plan without Deep Memory, a mismatched embedder), and
    record the embedder the run will use."""
    trainer = build_trainer(params, Settings())
    embedder = await asyncio.to_thread(trainer.preflight, dataset)
    return params.model_copy(update={"embedder": embedder})


@flow(
    name="training-run",
    flow_run_name="training-run-{dataset}",
    on_failure=[parent_failure_hook],
    on_crashed=[parent_failure_hook],
    on_cancellation=[parent_failure_hook],
)
async def training_run(
    dataset: str,
    user_id: UUID | None = None,
    generator: Literal["local", "openai"] = "local",
    model: str | None = None,
    questions_per_chunk: int = 4,
    max_pairs: int = 5000,
    batch_size: int = 64,
    train: bool = True,
    trainer: Literal["local", "managed"] = "local",
    embedder: str | None = None,
    include_previous_runs: bool = False,
) -> dict[str, Any]:
    """Generate question/chunk pairs for a DeepLake dataset, then train Deep Memory."""
    logger = get_run_logger()
    params = RunParams(
        generator=generator,
        model=model,
        questions_per_chunk=questions_per_chunk,
        max_pairs=max_pairs,
        batch_size=batch_size,
        train=train,
        trainer=trainer,
        embedder=embedder,
        include_previous_runs=include_previous_runs,
    )
    flow_run_id = UUID(str(current_flow_run.id)) if current_flow_run.id else None
    store = open_flow_store()
    try:
        run = store.find_run_by_flow_run_id(flow_run_id) if flow_run_id else None
        if run is None:
            if train:
                params = await preflight(dataset, params)
            run = store.create_run(
                dataset,
                user_id=user_id,
                params=params.model_dump(mode="json", exclude_none=True),
                flow_run_id=flow_run_id,
            )
            logger.info("created training run %s for %s", run.id, dataset)
        else:
            logger.info("resuming training run %s at %s", run.id, run.status.value)
            run = resume_point(store, run)
        run = await drive(run, store, train)
        logger.info("training run %s is %s", run.id, run.status.value)
        return {"run_id": str(run.id), "status": run.status.value, "metrics": run.metrics}
    finally:
        store.close()
