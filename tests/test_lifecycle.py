"""Status rules, and every transition against the compare-and-set in real PostgreSQL."""

from __future__ import annotations

import itertools
import uuid

import pytest

from dmflow.errors import ConcurrentUpdate, InvalidTransition, RunNotFound
from dmflow.models import TrainingRun
from dmflow.status import ALLOWED_TRANSITIONS, Phase, RunStatus
from dmflow.store.postgres import PostgresRunStore
from tests.fixtures.concurrency import at_once
from tests.fixtures.postgres import Database

ALL_PAIRS = list(itertools.product(RunStatus, RunStatus))
ALLOWED = [(a, b) for a, b in ALL_PAIRS if b in ALLOWED_TRANSITIONS[a]]
REFUSED = [(a, b) for a, b in ALL_PAIRS if b not in ALLOWED_TRANSITIONS[a]]


def run_at(db: Database, store: PostgresRunStore, status: RunStatus) -> TrainingRun:
    """A run put straight into `status`, as if its history had led there."""
    run = store.create_run(f"ds-{uuid.uuid4().hex[:8]}")
    db.execute(
        "update deep_memory_training_runs set status = %s where id = %s", (status.value, run.id)
    )
    return store.get_run(run.id)


def test_status_helpers() -> None:
    failed = {s for s in RunStatus if s.is_failed}
    assert failed == {RunStatus.GENERATING_FAILED, RunStatus.TRAINING_FAILED}
    assert {s for s in RunStatus if s.is_terminal} == failed | {RunStatus.COMPLETED}
    assert {s for s in RunStatus if s.is_active} == {RunStatus.GENERATING, RunStatus.TRAINING}
    assert RunStatus.GENERATING_FAILED.phase is Phase.GENERATION
    assert RunStatus.GENERATED.phase is Phase.GENERATION
    assert RunStatus.TRAINING_FAILED.phase is Phase.TRAINING
    assert RunStatus.failed_status_of(Phase.TRAINING) is RunStatus.TRAINING_FAILED
    assert RunStatus.active_status_of(Phase.GENERATION) is RunStatus.GENERATING
    assert "failed" not in {s.value for s in RunStatus}


def test_lifecycle_matches_the_design() -> None:
    assert len(ALLOWED) == 7
    assert (RunStatus.GENERATING_FAILED, RunStatus.TRAINING) not in ALLOWED
    assert ALLOWED_TRANSITIONS[RunStatus.COMPLETED] == frozenset()


@pytest.mark.parametrize(("from_status", "to_status"), ALLOWED, ids=lambda s: s.value)
def test_allowed_transition_is_written(
    db: Database, store: PostgresRunStore, from_status: RunStatus, to_status: RunStatus
) -> None:
    run = run_at(db, store, from_status)
    moved = store.transition(run, to_status, error_message="it broke")

    assert moved.status is to_status
    assert store.get_run(run.id) == moved
    recovery = from_status.is_failed
    assert moved.attempt == run.attempt + (1 if recovery else 0)
    assert moved.error_message == ("it broke" if to_status.is_failed else None)
    if to_status is RunStatus.COMPLETED:
        assert moved.completed_at is not None


@pytest.mark.parametrize(("from_status", "to_status"), REFUSED, ids=lambda s: s.value)
def test_other_transitions_are_refused(
    db: Database, store: PostgresRunStore, from_status: RunStatus, to_status: RunStatus
) -> None:
    run = run_at(db, store, from_status)
    with pytest.raises(InvalidTransition, match=f"from {from_status.value} to {to_status.value}"):
        store.transition(run, to_status)
    assert store.get_run(run.id) == run


def test_transition_with_a_stale_view_is_refused(store: PostgresRunStore) -> None:
    seen = store.create_run("ds")
    store.transition(seen, RunStatus.GENERATING_FAILED, error_message="x")
    with pytest.raises(ConcurrentUpdate, match="generating_failed at attempt 0"):
        store.transition(seen, RunStatus.GENERATED)
    assert store.get_run(seen.id).status is RunStatus.GENERATING_FAILED


def test_a_write_fenced_by_an_older_attempt_is_refused(store: PostgresRunStore) -> None:
    run = store.create_run("ds")
    failed = store.transition(run, RunStatus.GENERATING_FAILED, error_message="x")
    recovered = store.transition(failed, RunStatus.GENERATING)
    assert recovered.attempt == 1
    # the first attempt's worker wakes up and reports failure: it must not land
    with pytest.raises(ConcurrentUpdate):
        store.transition(run, RunStatus.GENERATING_FAILED, error_message="late")
    assert store.get_run(run.id).status is RunStatus.GENERATING


def test_transition_of_a_missing_run(store: PostgresRunStore) -> None:
    run = store.create_run("ds")
    ghost = run.model_copy(update={"id": uuid.uuid4()})
    with pytest.raises(RunNotFound):
        store.transition(ghost, RunStatus.GENERATED)


@pytest.mark.parametrize("round_", range(10))
def test_concurrent_transitions_exactly_one_wins(db: Database, round_: int) -> None:
    stores = [PostgresRunStore(db.url) for _ in range(2)]
    try:
        run = stores[0].create_run(f"ds-{round_}")
        failed = stores[0].transition(run, RunStatus.GENERATING_FAILED, error_message="x")
        outcomes = at_once(
            *[lambda s=s: s.transition(failed, RunStatus.GENERATING) for s in stores]
        )

        winners = [o for o in outcomes if isinstance(o, TrainingRun)]
        losers = [o for o in outcomes if isinstance(o, ConcurrentUpdate)]
        assert len(winners) == 1 and len(losers) == 1
        assert "already be" in str(losers[0])
        assert stores[0].get_run(run.id).attempt == 1
    finally:
        for store in stores:
            store.close()
