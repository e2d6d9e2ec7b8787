"""Every dmflow deployment, declared once: `dmflow serve` builds from this table and
tests/test_deployments.py holds `deployments/prefect.yaml` to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TAGS = ("dmflow",)


@dataclass(frozen=True)
class Deployment:
    name: str
    flow_name: str
    entrypoint: str
    """`path/to/file.py:function`, relative to the repository root (as prefect.yaml has it)."""
    description: str
    cron: str | None = None
    concurrency_limit: int | None = None
    collision_strategy: Literal["ENQUEUE", "CANCEL_NEW"] | None = None

    @property
    def full_name(self) -> str:
        """`flow-name/deployment-name`, as `prefect deployment run` and `run_deployment` take it."""
        return f"{self.flow_name}/{self.name}"


RUNS_AT_ONCE = 4
"""Runs beyond this wait their turn rather than compete for the LLM and the database."""

TRAINING_RUN = Deployment(
    name="training-run",
    flow_name="training-run",
    entrypoint="flows/training_run.py:training_run",
    description="Generate question/chunk pairs for a dataset, then train Deep Memory.",
    concurrency_limit=RUNS_AT_ONCE,
    collision_strategy="ENQUEUE",
)
RECOVER_TRAINING_RUN = Deployment(
    name="recover-training-run",
    flow_name="recover-training-run",
    entrypoint="flows/recovery.py:recover_training_run",
    description="Resume a failed run at its phase.",
    concurrency_limit=RUNS_AT_ONCE,
    collision_strategy="ENQUEUE",
)
RECOVER_FAILED_RUNS = Deployment(
    name="recover-failed-runs",
    flow_name="recover-failed-runs",
    entrypoint="flows/recovery.py:recover_failed_runs",
    description=(
        "Sweep, every 15 minutes: mark dead runs failed; start a recovery of each failed "
        "run once its backoff (DMFLOW_RECOVERY_BACKOFF_S x 2^attempt) has passed, up to "
        "DMFLOW_RECOVERY_ATTEMPT_BUDGET attempts; log and show what it checked."
    ),
    cron="*/15 * * * *",
    # One sweep at a time; a sweep due while one still runs is dropped. It only starts
    # recoveries (as recover-training-run flow runs), so it is short.
    concurrency_limit=1,
    collision_strategy="CANCEL_NEW",
)
DELETE_FAILED_RUN = Deployment(
    name="delete-failed-run",
    flow_name="delete-failed-run",
    entrypoint="flows/recovery.py:delete_failed_run",
    description="Delete a failed run with its pairs and chunk ledger.",
)

DEPLOYMENTS = (TRAINING_RUN, RECOVER_TRAINING_RUN, RECOVER_FAILED_RUNS, DELETE_FAILED_RUN)
