"""Every dmflow deployment, served from one process (`dmflow serve`)."""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment

from flows.recovery import delete_failed_run, recover_failed_runs, recover_training_run
from flows.training_run import training_run

SWEEP_CRON = "*/15 * * * *"
# Runs beyond this wait their turn rather than compete for the LLM and the database.
RUNS_AT_ONCE = ConcurrencyLimitConfig(limit=4, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def _built(deployment: object) -> RunnerDeployment:
    # to_deployment() hands back a coroutine only inside an event loop; this is sync.
    assert isinstance(deployment, RunnerDeployment)
    return deployment


def deployments() -> list[RunnerDeployment]:
    return [_built(d) for d in _declared()]


def _declared() -> list[object]:
    return [
        training_run.to_deployment(
            name="training-run",
            description="Generate question/chunk pairs for a dataset, then train Deep Memory.",
            concurrency_limit=RUNS_AT_ONCE,
            tags=["dmflow"],
        ),
        recover_training_run.to_deployment(
            name="recover-training-run",
            description="Resume a failed run at its phase.",
            concurrency_limit=RUNS_AT_ONCE,
            tags=["dmflow"],
        ),
        recover_failed_runs.to_deployment(
            name="recover-failed-runs",
            description="Sweep: mark dead runs failed, recover failed ones within the budget.",
            cron=SWEEP_CRON,
            # One sweep at a time; a sweep due while one still runs is dropped.
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
            tags=["dmflow"],
        ),
        delete_failed_run.to_deployment(
            name="delete-failed-run",
            description="Delete a failed run with its pairs and chunk ledger.",
            tags=["dmflow"],
        ),
    ]


def serve_all() -> None:
    serve(*deployments())
