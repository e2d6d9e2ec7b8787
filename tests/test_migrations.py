"""The migrations on real PostgreSQL: the legacy status conversion, history, refusals."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb

from dmflow.db.migrations import apply_migrations, discover
from tests.fixtures.concurrency import at_once
from tests.fixtures.postgres import Database

VERSIONS = [m.version for m in discover()]
BASELINE, PHASE_STATUSES, LIFECYCLE = VERSIONS[:3]
SIX_STATUSES = {
    "generating",
    "generated",
    "training",
    "completed",
    "generating_failed",
    "training_failed",
}


def _seed_legacy_run(db: Database, dataset: str, status: str, job_id: str | None) -> uuid.UUID:
    run_id = uuid.uuid4()
    db.execute(
        "insert into deep_memory_training_runs"
        " (id, dataset, status, deeplake_job_id, error_message)"
        " values (%s, %s, %s, %s, 'boom')",
        (run_id, dataset, status, job_id),
    )
    return run_id


def _status(db: Database, run_id: uuid.UUID) -> str:
    return db.execute("select status from deep_memory_training_runs where id = %s", (run_id,))[0][0]


def test_legacy_failed_runs_become_phase_specific(supabase_like_db: Database) -> None:
    db = supabase_like_db
    apply_migrations(db.url, up_to=BASELINE)
    with_job = _seed_legacy_run(db, "a", "failed", "job-123")
    without_job = _seed_legacy_run(db, "b", "failed", None)
    blank_job = _seed_legacy_run(db, "c", "failed", "  ")
    completed = _seed_legacy_run(db, "d", "completed", "job-9")

    apply_migrations(db.url)

    assert _status(db, with_job) == "training_failed"
    assert _status(db, without_job) == "generating_failed"
    assert _status(db, blank_job) == "generating_failed"
    assert _status(db, completed) == "completed"
    # the error message and job id are kept: nothing but the status changes
    assert db.execute(
        "select error_message, deeplake_job_id from deep_memory_training_runs where id = %s",
        (with_job,),
    ) == [("boom", "job-123")]


def test_status_migration_run_twice_changes_nothing(supabase_like_db: Database) -> None:
    db = supabase_like_db
    apply_migrations(db.url, up_to=BASELINE)
    _seed_legacy_run(db, "a", "failed", "job-1")
    _seed_legacy_run(db, "b", "failed", None)
    apply_migrations(db.url, up_to=PHASE_STATUSES)
    snapshot = db.execute("select * from deep_memory_training_runs order by id")
    constraint = db.execute(
        "select pg_get_constraintdef(oid) from pg_constraint where conname = "
        "'deep_memory_training_runs_status_check'"
    )

    migration = next(m for m in discover() if m.version == PHASE_STATUSES)
    db.execute(migration.sql)

    assert db.execute("select * from deep_memory_training_runs order by id") == snapshot
    assert (
        db.execute(
            "select pg_get_constraintdef(oid) from pg_constraint where conname = "
            "'deep_memory_training_runs_status_check'"
        )
        == constraint
    )
    assert apply_migrations(db.url) != []  # the rest still applies afterwards
    assert apply_migrations(db.url) == []  # and a second `migrate` has nothing to do


def test_status_migration_replaces_a_differently_named_check(supabase_like_db: Database) -> None:
    db = supabase_like_db
    apply_migrations(db.url, up_to=BASELINE)
    db.execute(
        "alter table deep_memory_training_runs"
        " drop constraint deep_memory_training_runs_status_check;"
        "alter table deep_memory_training_runs add constraint app_status_ck"
        " check (status in ('generating','generated','training','completed','failed'))"
    )
    run_id = _seed_legacy_run(db, "a", "failed", None)
    apply_migrations(db.url)
    assert _status(db, run_id) == "generating_failed"
    names = {
        row[0]
        for row in db.execute(
            "select conname from pg_constraint"
            " where conrelid = 'deep_memory_training_runs'::regclass"
            " and contype = 'c'"
        )
    }
    assert "app_status_ck" not in names


@pytest.mark.parametrize("bad_status", ["failed", "exploded", "Completed", ""])
def test_check_refuses_failed_and_unknown_statuses(db: Database, bad_status: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        _seed_legacy_run(db, "a", bad_status, None)


def test_check_accepts_the_six_statuses(db: Database) -> None:
    for index, status in enumerate(sorted(SIX_STATUSES)):
        _seed_legacy_run(db, f"ds-{index}", status, None)
    assert {
        row[0] for row in db.execute("select status from deep_memory_training_runs")
    } == SIX_STATUSES


def test_history_is_recorded_like_the_supabase_cli(db: Database) -> None:
    rows = db.execute(
        "select version, name, array_length(statements, 1)"
        " from supabase_migrations.schema_migrations order by version"
    )
    assert [(v, n) for v, n, _ in rows] == [(m.version, m.name) for m in discover()]
    assert all(count == 1 for *_, count in rows)


def test_two_unfinished_runs_of_one_dataset_stop_the_migration(supabase_like_db: Database) -> None:
    db = supabase_like_db
    apply_migrations(db.url, up_to=PHASE_STATUSES)
    first = _seed_legacy_run(db, "shared-ds", "generating", None)
    second = _seed_legacy_run(db, "shared-ds", "training_failed", "job")

    with pytest.raises(psycopg.errors.RaiseException) as refused:
        apply_migrations(db.url)

    text = f"{refused.value} {refused.value.diag.message_detail} {refused.value.diag.message_hint}"
    assert "shared-ds" in text and str(first) in text and str(second) in text
    assert "dmflow delete" in text
    # nothing of the refused migration stays behind
    assert db.execute(
        "select count(*) from information_schema.columns"
        " where table_name = 'deep_memory_training_runs' and column_name = 'attempt'"
    ) == [(0,)]
    assert LIFECYCLE not in {
        r[0] for r in db.execute("select version from supabase_migrations.schema_migrations")
    }

    db.execute("delete from deep_memory_training_runs where id = %s", (second,))
    # Every migration from the refused one on, in order.
    assert [m.version for m in apply_migrations(db.url)] == VERSIONS[VERSIONS.index(LIFECYCLE) :]


def test_lifecycle_migration_folds_duplicate_pairs(supabase_like_db: Database) -> None:
    db = supabase_like_db
    apply_migrations(db.url, up_to=PHASE_STATUSES)
    run_id = _seed_legacy_run(db, "a", "completed", None)
    for question in ["What is X?", "What is X?", "What is Y?"]:
        db.execute(
            "insert into deep_memory_training_pairs (training_run_id, question_text, chunk_id)"
            " values (%s, %s, 'c1')",
            (run_id, question),
        )
    apply_migrations(db.url)
    assert sorted(
        r[0] for r in db.execute("select question_text from deep_memory_training_pairs")
    ) == [
        "What is X?",
        "What is Y?",
    ]


def test_migrations_apply_to_plain_postgres_without_supabase(plain_db: Database) -> None:
    applied = apply_migrations(plain_db.url)
    assert [m.version for m in applied] == [m.version for m in discover()]
    assert plain_db.execute(
        "select count(*) from pg_proc where proname = 'dmflow_record_batch'"
    ) == [(1,)]


def test_concurrent_migrate_applies_each_version_once(supabase_like_db: Database) -> None:
    outcomes = at_once(*[lambda: apply_migrations(supabase_like_db.url)] * 3)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert errors == []
    assert supabase_like_db.execute(
        "select count(*) from supabase_migrations.schema_migrations"
    ) == [(len(discover()),)]


def test_dmflow_s_facts_move_out_of_the_params_of_runs_stored_before(
    supabase_like_db: Database,
) -> None:
    db = supabase_like_db
    apply_migrations(db.url, up_to=VERSIONS[VERSIONS.index("20261203000001") - 1])
    run_id = uuid.uuid4()
    db.execute(
        "insert into deep_memory_training_runs (id, dataset, status, params)"
        " values (%s, 'ds', 'completed', %s)",
        (
            run_id,
            Jsonb(
                {
                    "generator": "local",
                    "embedder": "hashing-512",
                    "coverage": {"sample": "spread", "asked": 40},
                    "max_pairs_reached": True,
                }
            ),
        ),
    )
    apply_migrations(db.url)
    assert db.execute(
        "select params, facts from deep_memory_training_runs where id = %s", (run_id,)
    ) == [
        (
            {"generator": "local", "embedder": "hashing-512"},
            {"coverage": {"sample": "spread", "asked": 40}, "max_pairs_reached": True},
        )
    ]
