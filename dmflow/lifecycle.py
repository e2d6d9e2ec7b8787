"""The run's lifecycle decisions, as plain functions over a run, the time and the settings.

    (new) -> generating -> generated -> training -> completed
                 |                         |
         generating_failed           training_failed

Flows ask these functions what to do and carry it out; nothing here knows Prefect.
What the operating system tells about a run's driver comes in as an argument.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from dmflow.errors import ConcurrentUpdate
from dmflow.models import TrainingRun
from dmflow.params import RunParams
from dmflow.run_ids import short
from dmflow.settings import Settings
from dmflow.status import Phase, RunStatus
from dmflow.store.base import RunStore

logger = logging.getLogger("dmflow.lifecycle")

ERROR_MESSAGE_MAX_CHARS = 4000

_REOPENS_TO = {
    RunStatus.GENERATING_FAILED: RunStatus.GENERATING,
    RunStatus.TRAINING_FAILED: RunStatus.TRAINING,
}


def reopen_failed_phase(
    store: RunStore, run: TrainingRun, flow_run_id: UUID | None = None
) -> TrainingRun:
    """The recovery transition: a failed run goes back into its phase with `attempt` bumped
    (a compare-and-set, so of two concurrent recoveries exactly one wins). Any other run
    is returned as it is."""
    target = _REOPENS_TO.get(run.status)
    if target is None:
        return run
    return store.transition(run, target, flow_run_id=flow_run_id)


def phases_to_do(run: TrainingRun, train: bool) -> list[Phase]:
    """The phases still to run, in order, from where the run stands. A failed run has
    none until `reopen_failed_phase` moves it back into its phase."""
    if run.status is RunStatus.GENERATING:
        return [Phase.GENERATION, Phase.TRAINING] if train else [Phase.GENERATION]
    if run.status is RunStatus.GENERATED:
        return [Phase.TRAINING] if train else []
    if run.status is RunStatus.TRAINING:
        return [Phase.TRAINING]
    return []


def trains_on_recovery(run: TrainingRun) -> bool:
    """Recovery trains a run started with training on, and a run a person asked to train:
    one waiting at `generated` (started with --no-train) or already in the training phase."""
    params = RunParams.model_validate(run.params)
    return params.train or run.status is RunStatus.GENERATED or run.status.phase is Phase.TRAINING


def heartbeat_age_s(run: TrainingRun, now: datetime) -> float | None:
    if run.heartbeat_at is None:
        return None
    return (now - run.heartbeat_at).total_seconds()


def heartbeat_is_stale(run: TrainingRun, now: datetime, settings: Settings) -> bool:
    age = heartbeat_age_s(run, now)
    return age is None or age >= settings.stale_after_s


@dataclass(frozen=True)
class Liveness:
    """Whether an active run still has a driver, and why, in words a person reads."""

    dead: bool
    reason: str


def judge_liveness(
    run: TrainingRun, now: datetime, settings: Settings, *, driver_gone: bool | None
) -> Liveness:
    """An active run is dead when its driver is known gone (`driver_gone`: its process no
    longer runs on the host it ran on) or its heartbeat is older than the stale limit,
    whatever Prefect says about its flow run: the attempt fence refuses a zombie that
    wakes up. `driver_gone` is None when this host cannot tell (another host, no lease).
    """
    if not (run.status.is_active or waits_to_train(run)):
        return Liveness(False, f"{run.status.value}: not an active run")
    age = heartbeat_age_s(run, now)
    beat = "no heartbeat ever" if age is None else f"last heartbeat {age:.0f} s ago"
    driver = (
        f"process {run.driver_pid} on {run.driver_host}"
        if run.driver_pid is not None
        else "no process recorded"
    )
    if driver_gone:
        between = " between generation and training" if waits_to_train(run) else ""
        return Liveness(
            True,
            f"its driver ({driver}) is gone{between} ({beat}): killed or crashed without reporting",
        )
    if heartbeat_is_stale(run, now, settings):
        return Liveness(
            True,
            f"silent: {beat}, past the {settings.stale_after_s:g} s stale limit ({driver}): "
            "killed, out of memory or its machine lost",
        )
    return Liveness(False, f"alive ({beat}; {driver})")


def waits_to_train(run: TrainingRun) -> bool:
    """Generated, and meant to train: its driver starts training next. A run generated
    with `train=False` rests there until someone recovers it."""
    return run.status is RunStatus.GENERATED and bool(run.params.get("train", True))


class SweepAction(StrEnum):
    RECONCILE = "reconcile"
    """An active run without a driver: mark it failed in its phase."""
    RECOVER = "recover"
    WAIT = "wait"
    """Failed too recently: the backoff has not passed."""
    OVER_BUDGET = "over_budget"
    """Failed as often as the budget allows: left for a person."""
    NONE = "none"


def sweep_action(
    run: TrainingRun, now: datetime, settings: Settings, run_liveness: Liveness | None = None
) -> SweepAction:
    """What the sweep does with one run. Active runs, and runs waiting to train, need
    their `liveness`: a driver that died between the two phases leaves a run generated
    and meant to train, with no failure to recover from; the sweep trains it."""
    if run.status.is_active:
        return SweepAction.RECONCILE if run_liveness and run_liveness.dead else SweepAction.NONE
    if waits_to_train(run):
        dead = run_liveness is not None and run_liveness.dead
        return SweepAction.RECOVER if dead else SweepAction.NONE
    if not run.status.is_failed:
        return SweepAction.NONE
    if run.attempt >= settings.recovery_attempt_budget:
        return SweepAction.OVER_BUDGET
    since = (now - run.updated_at).total_seconds() if run.updated_at else float("inf")
    if since < recovery_backoff_s(run, settings):
        return SweepAction.WAIT
    return SweepAction.RECOVER


def recovery_backoff_s(run: TrainingRun, settings: Settings) -> float:
    """Exponential: backoff x 2^attempt after the run's last failure."""
    return float(settings.recovery_backoff_s * 2**run.attempt)


def owned_by(run: TrainingRun, owner_flow_run: UUID | None) -> bool:
    """Whether the flow run `owner_flow_run` may work on the run: the run records it as
    its owner (or either is unknown, as for a subflow called on its own)."""
    return owner_flow_run is None or run.flow_run_id is None or run.flow_run_id == owner_flow_run


def interrupted_message(run: TrainingRun, how: str) -> str:
    """What a run interrupted by a signal is left with: what happened, and what to do."""
    where = (
        f"at {run.processed_chunks}/{run.total_chunks} chunks"
        if run.status.phase is Phase.GENERATION
        else f"while training ({run.pair_count} pairs)"
    )
    return f"interrupted ({how}) {where}: resume with `dmflow recover {short(run.id)}`"


def fail_phase(
    store: RunStore,
    run_id: UUID,
    phase: Phase,
    attempt: int | None,
    message: str,
    owner_flow_run: UUID | None = None,
    interrupted_by: str | None = None,
) -> TrainingRun | None:
    """Move the run from the phase's active status to its failed one; None when the run is
    elsewhere (already failed, moved on, or taken over by a newer attempt or another
    owning flow run). `interrupted_by` (a signal, as a person calls it) words the error from where
    the run stands instead of `message`."""
    active, failed = RunStatus.active_status_of(phase), RunStatus.failed_status_of(phase)
    run = store.get_run(run_id)
    stale = (attempt is not None and run.attempt != attempt) or not owned_by(run, owner_flow_run)
    if run.status is not active or stale:
        logger.info(
            "run %s is %s at attempt %s: not marking it %s",
            run_id,
            run.status.value,
            run.attempt,
            failed.value,
        )
        return None
    if interrupted_by is not None:
        message = interrupted_message(run, interrupted_by)
    try:
        return store.transition(run, failed, error_message=message[:ERROR_MESSAGE_MAX_CHARS])
    except ConcurrentUpdate:
        return None


def fail_active_run(
    store: RunStore, run: TrainingRun, message: str, interrupted_by: str | None = None
) -> TrainingRun | None:
    """Fail an active run in the phase it is in (a dead driver, a failed parent flow)."""
    if not run.status.is_active:
        return None
    return fail_phase(
        store, run.id, run.status.phase, run.attempt, message, interrupted_by=interrupted_by
    )
