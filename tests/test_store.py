"""The Postgres run store: creating, blocking, batches, deleting, settings."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb

from dmflow.errors import ConcurrentUpdate, RunBlocked, RunNotDeletable, RunNotFound
from dmflow.models import ChunkResult, TrainingMetrics
from dmflow.status import RunStatus
from dmflow.store.base import batch_payload
from dmflow.store.postgres import PostgresRunStore
from tests.fixtures.concurrency import at_once
from tests.fixtures.postgres import Database


def batch(*chunk_ids: str, questions: int = 2) -> list[ChunkResult]:
    return [
        ChunkResult.done(
            cid,
            [f"What does {cid} say about topic {n}?" for n in range(questions)],
            f"text of {cid}",
        )
        for cid in chunk_ids
    ]


def counts(db: Database, run_id: uuid.UUID) -> tuple[int, int]:
    pairs = db.execute(
        "select count(*) from deep_memory_training_pairs where training_run_id = %s", (run_id,)
    )[0][0]
    ledger = db.execute(
        "select count(*) from deep_memory_training_chunks where training_run_id = %s", (run_id,)
    )[0][0]
    return pairs, ledger


def test_create_run_starts_generating(store: PostgresRunStore) -> None:
    flow_run_id = uuid.uuid4()
    run = store.create_run("hub://org/docs", params={"generator": "local"}, flow_run_id=flow_run_id)
    assert run.status is RunStatus.GENERATING
    assert (run.attempt, run.processed_chunks, run.pair_count) == (0, 0, 0)
    assert run.params == {"generator": "local"}
    assert run.heartbeat_at is not None
    assert store.find_run_by_flow_run_id(flow_run_id) == run
    assert store.find_run_by_flow_run_id(uuid.uuid4()) is None


def test_the_same_flow_run_gets_its_run_back(store: PostgresRunStore) -> None:
    flow_run_id = uuid.uuid4()
    first = store.create_run("ds", flow_run_id=flow_run_id)
    again = store.create_run("ds", flow_run_id=flow_run_id)
    assert again.id == first.id
    assert len(store.list_runs()) == 1


def test_unfinished_run_blocks_a_new_one_and_is_named(store: PostgresRunStore) -> None:
    active = store.create_run("ds")
    with pytest.raises(RunBlocked) as blocked:
        store.create_run("ds")
    assert blocked.value.run_id == str(active.id)
    assert blocked.value.status == "generating"
    assert str(active.id) in str(blocked.value) and "generating" in str(blocked.value)

    failed = store.transition(active, RunStatus.GENERATING_FAILED, error_message="x")
    with pytest.raises(RunBlocked) as blocked:
        store.create_run("ds")
    message = str(blocked.value)
    assert f"dmflow recover {str(failed.id)[:8]}" in message
    assert f"dmflow delete {str(failed.id)[:8]}" in message


def test_only_completed_runs_do_not_block(db: Database, store: PostgresRunStore) -> None:
    run = store.create_run("ds")
    db.execute("update deep_memory_training_runs set status = 'completed' where id = %s", (run.id,))
    assert store.create_run("ds").status is RunStatus.GENERATING
    assert store.create_run("other-ds").status is RunStatus.GENERATING


def test_concurrent_creates_one_wins(db: Database) -> None:
    stores = [PostgresRunStore(db.url) for _ in range(4)]
    outcomes = at_once(*[lambda s=s: s.create_run("race-ds") for s in stores])
    for store in stores:
        store.close()
    blocked = [o for o in outcomes if isinstance(o, RunBlocked)]
    assert len(blocked) == 3
    winner_id = db.execute("select id from deep_memory_training_runs")[0][0]
    assert {b.run_id for b in blocked} == {str(winner_id)}


def test_record_batch_writes_pairs_ledger_and_counters(
    db: Database, store: PostgresRunStore
) -> None:
    run = store.create_run("ds")
    results = [*batch("c1", "c2", questions=3), ChunkResult.skipped("c3", "no usable questions")]
    after = store.record_batch(run, results, usage={"requests": 3, "prompt_tokens": 120})

    assert (after.processed_chunks, after.pair_count) == (3, 6)
    assert after.usage.counted() == {"requests": 3, "prompt_tokens": 120}
    assert after.heartbeat_at is not None and after.heartbeat_at >= run.heartbeat_at  # type: ignore[operator]
    assert counts(db, run.id) == (6, 3)
    assert store.recorded_chunk_ids(run.id) == {"c1", "c2", "c3"}
    ledger = dict(
        db.execute(
            "select chunk_id, outcome || ':' || coalesce(reason, '') || ':' || pair_count"
            " from deep_memory_training_chunks where training_run_id = %s",
            (run.id,),
        )
    )
    assert ledger == {"c1": "done::3", "c2": "done::3", "c3": "skipped:no usable questions:0"}
    preview = db.execute(
        "select chunk_preview, relevance_score from deep_memory_training_pairs"
        " where chunk_id = 'c1' limit 1"
    )
    assert preview == [("text of c1", 1.0)]


def test_recording_the_same_batch_twice_adds_nothing(db: Database, store: PostgresRunStore) -> None:
    run = store.create_run("ds")
    results = batch("c1", "c2")
    first = store.record_batch(run, results, usage={"requests": 2})
    second = store.record_batch(run, results, usage={"requests": 2})
    assert (second.processed_chunks, second.pair_count) == (
        first.processed_chunks,
        first.pair_count,
    )
    assert second.usage.counted() == {"requests": 2}
    assert counts(db, run.id) == (4, 2)

    # a batch overlapping a recorded chunk only adds the new chunk
    third = store.record_batch(run, batch("c2", "c3"), usage={"requests": 2})
    assert (third.processed_chunks, third.pair_count) == (3, 6)
    assert third.usage.counted() == {"requests": 4}


def test_a_batch_failing_halfway_writes_nothing(db: Database, store: PostgresRunStore) -> None:
    run = store.create_run("ds")
    store.record_batch(run, batch("c0"))
    chunks = [
        {"chunk_id": "c1", "outcome": "done", "pair_count": 1},
        {"chunk_id": "c2", "outcome": "done", "pair_count": 1},
    ]
    # the second pair breaks a NOT NULL after the ledger rows and first pair were inserted
    pairs = [
        {"chunk_id": "c1", "question_text": "What is c1?"},
        {"chunk_id": "c2", "question_text": None},
    ]
    with pytest.raises(psycopg.errors.NotNullViolation):
        db.execute(
            "select dmflow_record_batch(%s, 0, %s, %s, '{\"requests\": 2}')",
            (run.id, Jsonb(chunks), Jsonb(pairs)),
        )
    after = store.get_run(run.id)
    assert (after.processed_chunks, after.pair_count, after.usage.counted()) == (1, 2, {})
    assert counts(db, run.id) == (2, 1)
    assert store.recorded_chunk_ids(run.id) == {"c0"}


def test_a_record_reads_only_its_own_chunks_of_the_runs_ledger(
    db: Database, store: PostgresRunStore
) -> None:
    """Before, each record read every ledger row of its run (6,400 here) to find which
    of its chunks were new, so a large run slowed quadratically."""
    run = store.create_run("ds")
    for start in range(0, 6400, 640):
        run = store.record_batch(run, batch(*(f"c{n}" for n in range(start, start + 640))))
    chunks, pairs = batch_payload(batch(*(f"c{n}" for n in range(6390, 6454))))
    with psycopg.connect(db.url) as conn:  # one transaction: its own statistics
        conn.execute(
            "select dmflow_record_batch(%s, 0, %s, %s)", (run.id, Jsonb(chunks), Jsonb(pairs))
        )
        read = conn.execute(
            "select seq_tup_read + idx_tup_fetch from pg_stat_xact_user_tables"
            " where relname = 'deep_memory_training_chunks'"
        ).fetchone()
    assert read is not None and read[0] <= 64, read
    assert store.get_run(run.id).processed_chunks == 6454


def test_a_batch_from_an_older_attempt_is_refused(db: Database, store: PostgresRunStore) -> None:
    run = store.create_run("ds")
    failed = store.transition(run, RunStatus.GENERATING_FAILED, error_message="x")
    store.transition(failed, RunStatus.GENERATING)
    with pytest.raises(ConcurrentUpdate):
        store.record_batch(run, batch("c1"))
    assert counts(db, run.id) == (0, 0)


def test_a_batch_for_a_run_not_generating_is_refused(store: PostgresRunStore) -> None:
    run = store.transition(store.create_run("ds"), RunStatus.GENERATED)
    with pytest.raises(ConcurrentUpdate, match="generated"):
        store.record_batch(run, batch("c1"))


def test_deleting_a_failed_run_removes_pairs_and_ledger(
    db: Database, store: PostgresRunStore
) -> None:
    run = store.create_run("ds")
    run = store.record_batch(run, batch("c1", "c2"))
    failed = store.transition(run, RunStatus.GENERATING_FAILED, error_message="x")
    keep = store.create_run("other")
    store.record_batch(keep, batch("k1"))

    deleted = store.delete_failed_run(failed.id)

    assert deleted.id == failed.id
    assert counts(db, run.id) == (0, 0)
    assert counts(db, keep.id) == (2, 1)
    with pytest.raises(RunNotFound):
        store.get_run(run.id)
    assert store.create_run("ds").status is RunStatus.GENERATING  # no longer blocked


@pytest.mark.parametrize(
    "status",
    [RunStatus.GENERATING, RunStatus.GENERATED, RunStatus.TRAINING, RunStatus.COMPLETED],
    ids=str,
)
def test_deleting_any_other_run_is_refused(
    db: Database, store: PostgresRunStore, status: RunStatus
) -> None:
    run = store.record_batch(store.create_run("ds"), batch("c1"))
    db.execute(
        "update deep_memory_training_runs set status = %s where id = %s", (status.value, run.id)
    )
    with pytest.raises(RunNotDeletable, match=f"is {status.value}; only failed runs"):
        store.delete_failed_run(run.id)
    assert counts(db, run.id) == (2, 1)


def test_deleting_a_missing_run(store: PostgresRunStore) -> None:
    with pytest.raises(RunNotFound):
        store.delete_failed_run(uuid.uuid4())


def test_completing_a_run_updates_settings(db: Database, store: PostgresRunStore) -> None:
    user_id = uuid.uuid4()
    db.execute("insert into auth.users (id) values (%s)", (user_id,))
    for owner in (user_id, None):
        run = store.create_run(f"ds-{owner}", user_id=owner)
        run = store.transition(run, RunStatus.GENERATED)
        run = store.transition(run, RunStatus.TRAINING)
        run = store.update_progress(
            run, deeplake_job_id="job-1", metrics=TrainingMetrics(before={"recall@10": 0.5})
        )
        done = store.transition(run, RunStatus.COMPLETED)
        assert (
            done.metrics == TrainingMetrics(before={"recall@10": 0.5})
            and done.deeplake_job_id == "job-1"
        )
        row = db.execute(
            "select last_training_run_id, last_trained_at from deep_memory_settings"
            " where user_id is not distinct from %s",
            (owner,),
        )
        assert row == [(done.id, done.completed_at)]


def test_list_runs_newest_first(store: PostgresRunStore) -> None:
    ids = [store.create_run(f"ds-{n}").id for n in range(3)]
    assert [r.id for r in store.list_runs()] == ids[::-1]
    assert [r.id for r in store.list_runs(dataset="ds-1")] == [ids[1]]
    assert len(store.list_runs(limit=2)) == 2


def test_get_missing_run(store: PostgresRunStore) -> None:
    with pytest.raises(RunNotFound, match="dmflow runs"):
        store.get_run(uuid.uuid4())


def test_max_pairs_is_never_exceeded(db: Database, store: PostgresRunStore) -> None:
    run = store.create_run("ds")
    run = store.record_batch(run, batch("c1", "c2", questions=4), max_pairs=10)
    assert run.pair_count == 8
    # 2 pairs of room left: c3 keeps 2 of its 4 questions, c4 and c5 stay unrecorded
    run = store.record_batch(
        run, [*batch("c3", "c4", questions=4), ChunkResult.skipped("c5", "empty")], max_pairs=10
    )
    assert (run.pair_count, run.processed_chunks) == (10, 3)
    assert store.recorded_chunk_ids(run.id) == {"c1", "c2", "c3"}
    assert db.execute(
        "select pair_count from deep_memory_training_chunks where chunk_id = 'c3'"
    ) == [(2,)]
    assert db.execute(
        "select question_text from deep_memory_training_pairs where chunk_id = 'c3'"
        " order by question_text"
    ) == [("What does c3 say about topic 0?",), ("What does c3 say about topic 1?",)]
    # at the cap nothing more is taken, not even skipped chunks
    run = store.record_batch(run, [ChunkResult.skipped("c6", "empty")], max_pairs=10)
    assert (run.pair_count, run.processed_chunks) == (10, 3)


def test_progress_sets_fields_and_merges_facts_leaving_params_alone(
    store: PostgresRunStore,
) -> None:
    run = store.create_run("ds", params={"generator": "local", "max_pairs": 10})
    run = store.update_progress(run, total_chunks=42, facts_patch={"embedder": "hashing-512"})
    run = store.update_progress(run, facts_patch={"max_pairs_reached": True})
    assert run.total_chunks == 42
    assert (run.facts.embedder, run.facts.max_pairs_reached) == ("hashing-512", True)
    assert run.params == {"generator": "local", "max_pairs": 10}


def test_usage_alone_counts_once_per_record_key(store: PostgresRunStore) -> None:
    run = store.create_run("ds")
    key = uuid.uuid4()
    once = store.record_batch(run, [], {"requests": 3}, record_key=key)
    again = store.record_batch(run, [], {"requests": 3}, record_key=key)  # a retried record
    other = store.record_batch(run, [], {"requests": 2}, record_key=uuid.uuid4())
    assert (once.usage.requests, again.usage.requests) == (3, 3)
    assert other.usage.requests == 5 and other.processed_chunks == 0
    # Without a key the old replay guard holds: usage only with new chunks.
    assert store.record_batch(run, [], {"requests": 9}).usage.requests == 5


def test_metrics_and_usage_written_before_they_were_typed_read_as_they_were(
    db: Database, store: PostgresRunStore
) -> None:
    run = store.create_run("ds-old")
    db.execute(
        "update deep_memory_training_runs set metrics = %s, usage = %s where id = %s",
        (
            Jsonb(
                {
                    "before": {"recall@10": 0.4},
                    "after": {"recall@10": 0.6},
                    "train_pairs": 90,
                    "eval_pairs": 10,
                    "adapter": "/data/adapter.npy",  # a trainer's own extra
                }
            ),
            Jsonb({"requests": 7, "cost_usd": 0.25, "questions_dropped_assistant_chatter": 3}),
            run.id,
        ),
    )
    read = store.get_run(run.id)
    assert read.metrics is not None
    assert (read.metrics.after["recall@10"], read.metrics.train_pairs) == (0.6, 90)
    assert read.metrics.stored()["adapter"] == "/data/adapter.npy"
    assert (read.usage.requests, read.usage.cost_usd) == (7, 0.25)
    assert read.usage.dropped == {"assistant chatter": 3}
