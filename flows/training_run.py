"""`training_run`: the parent flow people start from the UI, a schedule or the CLI.

    (new) -> generating -> generated -> training -> completed

It creates the run, or, when Prefect runs the same flow run again (the UI's
Retry, `prefect flow-run retry`, a restart after a crash), finds it by
`flow_run_id` and resumes at its phase. It has no `retries=`: a retry of the
parent would start every subflow as a new run.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from prefect import flow, get_run_logger

from dmflow import lifecycle, resources
from dmflow.chunks import CheckedIds, check_usable, ids_checked_by_the_caller
from dmflow.dataset_names import canonical_dataset
from dmflow.driver import create_leased_run
from dmflow.models import TrainingRun
from dmflow.params import (
    BLANK,
    NO_ITEMS,
    BatchSize,
    MaxPairs,
    OptionalIntervals,
    OptionalText,
    OptionalUser,
    QuestionsPerChunk,
    RunParams,
    Seconds,
    documented_parameters,
)
from dmflow.training.factory import build_trainer
from flows.events import store_emitting_events
from flows.hooks import mark_run_failed_in_its_phase
from flows.interruption import signals_cancel
from flows.names import training_run_name
from flows.phases import current_flow_run_id, run_phases


async def preflight(dataset: str, params: RunParams) -> str:
    """Refuse what training cannot do before generation spends anything (a local path for
    the managed trainer, no token, a plan without Deep Memory, a mismatched embedder).
    Returns the embedder the run will use."""
    trainer = build_trainer(params, resources.settings())
    return await asyncio.to_thread(trainer.preflight, dataset)


# The parameters are RunParams' fields, spelled out so that the Prefect UI's form and
# `prefect deployment run --param max_pairs=...` see each one; test_run_params_contract.py
# fails when the two differ.
@flow(
    name="training-run",
    flow_run_name=training_run_name,
    on_failure=[mark_run_failed_in_its_phase],
    on_crashed=[mark_run_failed_in_its_phase],
    on_cancellation=[mark_run_failed_in_its_phase],
)
@documented_parameters(
    dataset="The DeepLake dataset: a local path or hub://org/name.",
    user_id="Who the run is for (optional; stored on the run).",
)
async def training_run(
    dataset: str,
    user_id: OptionalUser = BLANK,
    generator: Literal["local", "openai"] = "local",
    model: OptionalText = BLANK,
    questions_per_chunk: QuestionsPerChunk = 4,
    prompt: Literal["list", "one_question"] = "list",
    max_pairs: MaxPairs = 5000,
    sample: Literal["spread", "in_order"] = "spread",
    sample_seed: int = 7,
    batch_size: BatchSize = 256,
    train: bool = True,
    trainer: Literal["local", "managed"] = "local",
    embedder: OptionalText = BLANK,
    include_previous_runs: bool = False,
    poll_intervals_s: OptionalIntervals = NO_ITEMS,
    training_timeout_s: Seconds = 6 * 3600,
) -> TrainingRun:
    """Generate question/chunk pairs for a DeepLake dataset, then train Deep Memory."""
    with signals_cancel(asyncio.current_task()):  # a SIGTERM ends it, every time
        params = RunParams.from_arguments(locals())
        dataset = canonical_dataset(dataset)  # `ds/` and `./ds` are the dataset `ds`
        logger = get_run_logger()
        store = store_emitting_events()
        flow_run_id = current_flow_run_id()
        run = store.find_run_by_flow_run_id(flow_run_id) if flow_run_id else None
        checked: CheckedIds | None = None
        if run is None:
            # No run row for a dataset no phase can use: it would block the dataset.
            checked = await asyncio.to_thread(check_usable, dataset, resources.settings())
            embedder = await preflight(dataset, params) if params.train else None
            run = create_leased_run(
                store,
                dataset,
                user_id=user_id,
                params=params.model_dump(mode="json", exclude_none=True),
                flow_run_id=flow_run_id,
            )
            if embedder is not None:  # dmflow's fact, not the user's parameter
                run = store.update_progress(run, facts_patch={"embedder": embedder})
            logger.info("created training run %s for %s", run.id, dataset)
            preflighted = params.train
        else:
            logger.info("resuming training run %s at %s", run.id, run.status.value)
            run = lifecycle.reopen_failed_phase(store, run)
            preflighted = False
        phases = lifecycle.phases_to_do(run, params.train)
        with ids_checked_by_the_caller(checked):  # generation does not read them again
            run = await run_phases(run, phases, preflighted=preflighted)
        logger.info("training run %s is %s", run.id, run.status.value)
        return run
