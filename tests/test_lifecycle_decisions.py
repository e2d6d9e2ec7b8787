"""`dmflow.lifecycle`: every decision about a run, without Prefect (a real store to write to)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dmflow import lifecycle
from dmflow.lifecycle import SweepAction
from dmflow.models import TrainingRun
from dmflow.settings import Settings
from dmflow.status import Phase, RunStatus
from dmflow.store.postgres import PostgresRunStore
from tests.fixtures.concurrency import at_once
from tests.fixtures.postgres import Database

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SETTINGS = Settings(stale_after_s=60, recovery_attempt_budget=3, recovery_backoff_s=100)


def a_run(status: RunStatus, **fields: object) -> TrainingRun:
    values: dict[str, object] = {"id": uuid.uuid4(), "dataset": "ds", "status": status}
    values.update(fields)
    return TrainingRun.model_validate(values)


def beat(seconds_ago: float | None) -> dict[str, object]:
    return {"heartbeat_at": None if seconds_ago is None else NOW - timedelta(seconds=seconds_ago)}


def run_in(db: Database, store: PostgresRunStore, status: RunStatus) -> TrainingRun:
    run = store.create_run(f"ds-{uuid.uuid4().hex[:8]}")
    db.execute(
        "update deep_memory_training_runs set status = %s where id = %s", (status.value, run.id)
    )
    return store.get_run(run.id)


# -- the phases still to do ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "train", "phases"),
    [
        (RunStatus.GENERATING, True, [Phase.GENERATION, Phase.TRAINING]),
        (RunStatus.GENERATING, False, [Phase.GENERATION]),
        (RunStatus.GENERATED, True, [Phase.TRAINING]),
        (RunStatus.GENERATED, False, []),
        (RunStatus.TRAINING, True, [Phase.TRAINING]),
        (RunStatus.TRAINING, False, [Phase.TRAINING]),
        (RunStatus.COMPLETED, True, []),
        (RunStatus.GENERATING_FAILED, True, []),
        (RunStatus.TRAINING_FAILED, True, []),
    ],
)
def test_phases_to_do(status: RunStatus, train: bool, phases: list[Phase]) -> None:
    assert lifecycle.phases_to_do(a_run(status), train) == phases


def test_recovery_trains_what_was_meant_to_be_trained() -> None:
    assert lifecycle.trains_on_recovery(a_run(RunStatus.GENERATING_FAILED))
    no_train = {"params": {"train": False}}
    assert not lifecycle.trains_on_recovery(a_run(RunStatus.GENERATING_FAILED, **no_train))
    # a person recovering a run parked at generated, or failed in training, wants it trained
    assert lifecycle.trains_on_recovery(a_run(RunStatus.GENERATED, **no_train))
    assert lifecycle.trains_on_recovery(a_run(RunStatus.TRAINING_FAILED, **no_train))


# -- the recovery transition -----------------------------------------------------------


@pytest.mark.parametrize(
    ("failed", "reopened"),
    [
        (RunStatus.GENERATING_FAILED, RunStatus.GENERATING),
        (RunStatus.TRAINING_FAILED, RunStatus.TRAINING),
    ],
)
def test_reopen_failed_phase_bumps_the_attempt(
    db: Database, store: PostgresRunStore, failed: RunStatus, reopened: RunStatus
) -> None:
    run = run_in(db, store, failed)
    flow_run_id = uuid.uuid4()
    moved = lifecycle.reopen_failed_phase(store, run, flow_run_id)
    assert (moved.status, moved.attempt, moved.flow_run_id) == (reopened, 1, flow_run_id)
    assert store.get_run(run.id) == moved


@pytest.mark.parametrize(
    "status", [RunStatus.GENERATING, RunStatus.GENERATED, RunStatus.TRAINING, RunStatus.COMPLETED]
)
def test_reopen_leaves_other_runs_alone(
    db: Database, store: PostgresRunStore, status: RunStatus
) -> None:
    run = run_in(db, store, status)
    assert lifecycle.reopen_failed_phase(store, run) == run
    assert store.get_run(run.id) == run


def test_two_reopens_one_wins(db: Database, store: PostgresRunStore) -> None:
    run = run_in(db, store, RunStatus.GENERATING_FAILED)
    outcomes = at_once(*[lambda: lifecycle.reopen_failed_phase(store, run)] * 2)
    assert sorted(type(o).__name__ for o in outcomes) == ["ConcurrentUpdate", "TrainingRun"]
    assert store.get_run(run.id).attempt == 1


# -- whether an active run is dead -----------------------------------------------------

LEASE = {"driver_host": "worker-1", "driver_pid": 4242}


def test_a_fresh_heartbeat_with_its_driver_running_is_alive() -> None:
    run = a_run(RunStatus.GENERATING, **beat(10), **LEASE)
    for driver_gone in (False, None):
        verdict = lifecycle.judge_liveness(run, NOW, SETTINGS, driver_gone=driver_gone)
        assert not verdict.dead
        assert verdict.reason == "alive (last heartbeat 10 s ago; process 4242 on worker-1)"
    assert not lifecycle.heartbeat_is_stale(run, NOW, SETTINGS)


def test_a_driver_gone_on_its_host_is_dead_at_once() -> None:
    run = a_run(RunStatus.TRAINING, **beat(1), **LEASE)
    verdict = lifecycle.judge_liveness(run, NOW, SETTINGS, driver_gone=True)
    assert verdict.dead
    assert "process 4242 on worker-1" in verdict.reason and "gone" in verdict.reason


@pytest.mark.parametrize("seconds_ago", [60, 3600, None])
def test_a_stale_heartbeat_is_dead_whatever_else_is_known(seconds_ago: float | None) -> None:
    run = a_run(RunStatus.GENERATING, **beat(seconds_ago))
    verdict = lifecycle.judge_liveness(run, NOW, SETTINGS, driver_gone=None)
    assert verdict.dead
    assert "alive" not in verdict.reason and "60 s stale limit" in verdict.reason
    assert ("no heartbeat ever" in verdict.reason) is (seconds_ago is None)


def test_a_finished_run_is_never_dead() -> None:
    run = a_run(RunStatus.GENERATING_FAILED, **beat(None))
    assert not lifecycle.judge_liveness(run, NOW, SETTINGS, driver_gone=True).dead


# -- the sweep's verdict ---------------------------------------------------------------


def failed_at(attempt: int, seconds_ago: float) -> TrainingRun:
    return a_run(
        RunStatus.TRAINING_FAILED,
        attempt=attempt,
        updated_at=NOW - timedelta(seconds=seconds_ago),
    )


@pytest.mark.parametrize(
    ("run", "action"),
    [
        (failed_at(0, 100), SweepAction.RECOVER),  # backoff 100 x 2^0 passed
        (failed_at(0, 99), SweepAction.WAIT),
        (failed_at(1, 199), SweepAction.WAIT),  # 100 x 2^1
        (failed_at(2, 400), SweepAction.RECOVER),
        (failed_at(3, 10**6), SweepAction.OVER_BUDGET),
        (a_run(RunStatus.COMPLETED), SweepAction.NONE),
        (a_run(RunStatus.GENERATED), SweepAction.NONE),
    ],
    ids=["recover", "wait", "wait-longer", "recover-later", "over-budget", "done", "parked"],
)
def test_sweep_action_for_finished_runs(run: TrainingRun, action: SweepAction) -> None:
    assert lifecycle.sweep_action(run, NOW, SETTINGS) is action


@pytest.mark.parametrize(
    ("params", "driver_gone", "seconds_ago", "action"),
    [
        ({"train": True}, True, 1, SweepAction.RECOVER),  # killed between the phases
        ({"train": True}, None, 3600, SweepAction.RECOVER),  # silent past the stale limit
        ({"train": True}, False, 1, SweepAction.NONE),  # its driver starts training now
        ({"train": False}, True, 3600, SweepAction.NONE),  # parked on purpose
    ],
    ids=["driver-gone", "stale", "alive", "no-train"],
)
def test_a_run_left_generated_by_a_dead_driver_is_trained_by_the_sweep(
    params: dict[str, object], driver_gone: bool | None, seconds_ago: float, action: SweepAction
) -> None:
    run = a_run(RunStatus.GENERATED, params=params, **beat(seconds_ago), **LEASE)
    verdict = lifecycle.judge_liveness(run, NOW, SETTINGS, driver_gone=driver_gone)
    assert lifecycle.sweep_action(run, NOW, SETTINGS, verdict) is action
    if action is SweepAction.RECOVER and driver_gone:
        assert "between generation and training" in verdict.reason


def test_sweep_action_for_active_runs() -> None:
    run = a_run(RunStatus.GENERATING, **beat(1))
    dead = lifecycle.judge_liveness(run, NOW, SETTINGS, driver_gone=True)
    alive = lifecycle.judge_liveness(run, NOW, SETTINGS, driver_gone=False)
    assert lifecycle.sweep_action(run, NOW, SETTINGS, dead) is SweepAction.RECONCILE
    assert lifecycle.sweep_action(run, NOW, SETTINGS, alive) is SweepAction.NONE
    assert lifecycle.sweep_action(run, NOW, SETTINGS) is SweepAction.NONE


def test_a_run_failed_with_no_update_time_is_recovered() -> None:
    run = a_run(RunStatus.GENERATING_FAILED, updated_at=None)
    assert lifecycle.sweep_action(run, NOW, SETTINGS) is SweepAction.RECOVER


# -- failing a phase -------------------------------------------------------------------


def test_fail_phase_writes_the_phase_failure(db: Database, store: PostgresRunStore) -> None:
    run = run_in(db, store, RunStatus.TRAINING)
    failed = lifecycle.fail_phase(store, run.id, Phase.TRAINING, run.attempt, "x" * 5000)
    assert failed is not None and failed.status is RunStatus.TRAINING_FAILED
    assert failed.error_message == "x" * lifecycle.ERROR_MESSAGE_MAX_CHARS
    assert store.get_run(run.id) == failed


def test_fail_phase_never_overwrites_another_phase_or_attempt(
    db: Database, store: PostgresRunStore
) -> None:
    generating = run_in(db, store, RunStatus.GENERATING)
    assert lifecycle.fail_phase(store, generating.id, Phase.TRAINING, None, "late") is None
    stale_attempt = generating.attempt + 1
    assert lifecycle.fail_phase(store, generating.id, Phase.GENERATION, stale_attempt, "z") is None
    assert store.get_run(generating.id) == generating

    done = run_in(db, store, RunStatus.COMPLETED)
    assert lifecycle.fail_phase(store, done.id, Phase.TRAINING, None, "late hook") is None
    assert store.get_run(done.id).status is RunStatus.COMPLETED


def test_fail_active_run_uses_the_phase_it_is_in(db: Database, store: PostgresRunStore) -> None:
    training = run_in(db, store, RunStatus.TRAINING)
    failed = lifecycle.fail_active_run(store, training, "driver gone")
    assert failed is not None
    assert (failed.status, failed.error_message) == (RunStatus.TRAINING_FAILED, "driver gone")
    parked = run_in(db, store, RunStatus.GENERATED)
    assert lifecycle.fail_active_run(store, parked, "driver gone") is None


def test_fail_phase_loses_a_race_quietly(db: Database, store: PostgresRunStore) -> None:
    run = run_in(db, store, RunStatus.GENERATING)
    store.transition(run, RunStatus.GENERATED)  # moved on after `run` was read
    assert lifecycle.fail_active_run(store, run, "too late") is None
    assert store.get_run(run.id).status is RunStatus.GENERATED


def test_an_interrupted_phase_says_where_it_stopped_and_how_to_resume(
    db: Database, store: PostgresRunStore
) -> None:
    run = run_in(db, store, RunStatus.GENERATING)
    db.execute(
        "update deep_memory_training_runs set total_chunks = 314, processed_chunks = 48"
        " where id = %s",
        (run.id,),
    )
    failed = lifecycle.fail_phase(
        store, run.id, Phase.GENERATION, run.attempt, "CancelledError", interrupted_by="Ctrl-C"
    )
    assert failed is not None and failed.status is RunStatus.GENERATING_FAILED
    assert failed.error_message == (
        f"interrupted (Ctrl-C) at 48/314 chunks: resume with `dmflow recover {str(run.id)[:8]}`"
    )
