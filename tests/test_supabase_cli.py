"""The migrations as a Supabase team applies them: the real Supabase CLI's `db push`.

`supabase db push` sends each file's statements as one pipeline (an implicit
transaction that also writes the history row), unlike `dmflow migrate`, which runs a
file as one script inside BEGIN/COMMIT. Every migration must apply under both, so
every file in `supabase/migrations/` goes through both tools here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import psycopg

from dmflow.db.migrations import discover
from tests.fixtures.cli import CliRunner, clean_env
from tests.fixtures.postgres import Database
from tests.fixtures.supabase_cli import SupabaseCli

BASELINE = discover()[0]
# A statement that ends or opens a transaction: under the CLI the history row would
# then be written in a transaction of its own, after the file's COMMIT.
TRANSACTION_CONTROL = re.compile(
    r"^(begin|start\s+transaction|commit|end|rollback|abort|savepoint|release|lock)\b", re.I
)


def _workdir(tmp_path: Path, up_to: str | None = None) -> Path:
    """A Supabase project directory holding the repository's migrations (the CLI writes
    `supabase/.temp` into its workdir, so not the checkout itself)."""
    migrations = tmp_path / "project" / "supabase" / "migrations"
    shutil.rmtree(migrations, ignore_errors=True)
    migrations.mkdir(parents=True)
    for migration in discover():
        if up_to is None or migration.version <= up_to:
            shutil.copy(migration.path, migrations)
    return migrations.parents[1]


def _db_url(db: Database) -> str:
    return f"{db.url}?sslmode=disable"


def _push(cli: SupabaseCli, db: Database, workdir: Path) -> subprocess.CompletedProcess[str]:
    return cli("db", "push", "--db-url", _db_url(db), "--include-all", "--yes", workdir=workdir)


def _legacy_application(db: Database) -> dict[str, uuid.UUID]:
    """The application's tables as they were before dmflow (no migration history),
    holding runs in the legacy statuses."""
    db.execute(BASELINE.sql)
    runs = {}
    for dataset, status, job_id in [
        ("failed-in-training", "failed", "job-1"),
        ("failed-in-generation", "failed", None),
        ("failed-blank-job", "failed", "  "),
        ("done", "completed", "job-2"),
        ("active", "generating", None),
    ]:
        runs[dataset] = db.execute(
            "insert into deep_memory_training_runs (dataset, status, deeplake_job_id,"
            " error_message) values (%s, %s, %s, 'boom') returning id",
            (dataset, status, job_id),
        )[0][0]
    return runs


def _statuses(db: Database) -> dict[str, str]:
    return dict(db.execute("select dataset, status from deep_memory_training_runs"))  # type: ignore[arg-type]


def _history(db: Database) -> list[tuple[str, str]]:
    return [
        (version, name)
        for version, name in db.execute(
            "select version, name from supabase_migrations.schema_migrations order by version"
        )
    ]


def _without_leading_comments(statement: str) -> str:
    lines = statement.strip().splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines)


def test_supabase_db_push_applies_every_migration_onto_legacy_runs(
    supabase_cli: SupabaseCli, supabase_like_db: Database, dmflow: CliRunner, tmp_path: Path
) -> None:
    db = supabase_like_db
    _legacy_application(db)

    pushed = _push(supabase_cli, db, _workdir(tmp_path))

    output = pushed.stdout + pushed.stderr
    assert pushed.returncode == 0, output
    for migration in discover():
        assert f"Applying migration {migration.path.name}..." in output
    assert "Finished supabase db push." in output
    assert _statuses(db) == {
        "failed-in-training": "training_failed",
        "failed-in-generation": "generating_failed",
        "failed-blank-job": "generating_failed",
        "done": "completed",
        "active": "generating",
    }
    assert db.execute("select distinct error_message from deep_memory_training_runs") == [("boom",)]
    assert _history(db) == [(m.version, m.name) for m in discover()]
    # As the CLI split them: no file opens or ends a transaction of its own.
    recorded = db.execute("select unnest(statements) from supabase_migrations.schema_migrations")
    offending = [s for (s,) in recorded if TRANSACTION_CONTROL.match(_without_leading_comments(s))]
    assert offending == []

    dry = dmflow("migrate", "--dry-run", env=clean_env(DMFLOW_DATABASE_URL=db.url))
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip().splitlines() == ["0 pending"]


def test_supabase_cli_sees_what_dmflow_migrate_applied(
    supabase_cli: SupabaseCli, supabase_like_db: Database, dmflow: CliRunner, tmp_path: Path
) -> None:
    db = supabase_like_db
    _legacy_application(db)
    migrated = dmflow("migrate", env=clean_env(DMFLOW_DATABASE_URL=db.url))
    assert migrated.returncode == 0, migrated.stderr
    workdir = _workdir(tmp_path)

    listed = supabase_cli("migration", "list", "--db-url", _db_url(db), workdir=workdir)
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "|" in line]
    for migration in discover():
        (row,) = [line for line in rows if migration.version in line]
        local, remote, _ = (cell.strip(" `") for cell in row.split("|"))
        assert (local, remote) == (migration.version, migration.version)

    dry = supabase_cli(
        "db", "push", "--db-url", _db_url(db), "--include-all", "--dry-run", workdir=workdir
    )
    assert dry.returncode == 0, dry.stderr
    assert "Remote database is up to date." in dry.stdout + dry.stderr
    assert "Would push" not in dry.stdout + dry.stderr
    assert _statuses(db)["failed-in-training"] == "training_failed"


def test_a_migration_failing_under_supabase_db_push_leaves_nothing_behind(
    supabase_cli: SupabaseCli, supabase_like_db: Database, tmp_path: Path
) -> None:
    db = supabase_like_db
    runs = _legacy_application(db)
    # A second unfinished run of one dataset: the lifecycle migration stops half-way,
    # after its first statements have added columns and a trigger.
    db.execute(
        "insert into deep_memory_training_runs (dataset, status) values ('active', 'failed')"
    )
    workdir = _workdir(tmp_path)

    refused = _push(supabase_cli, db, workdir)

    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "more than one unfinished run" in output and "dmflow delete" in output
    lifecycle = discover()[2]
    assert lifecycle.version not in dict(_history(db))
    assert db.execute(
        "select count(*) from information_schema.columns"
        " where table_name = 'deep_memory_training_runs' and column_name = 'attempt'"
    ) == [(0,)]

    db.execute("delete from deep_memory_training_runs where id = %s", (runs["active"],))
    again = _push(supabase_cli, db, workdir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _history(db) == [(m.version, m.name) for m in discover()]
    assert _statuses(db)["active"] == "generating_failed"


def test_supabase_db_push_converts_a_legacy_failed_written_while_it_waits(
    supabase_cli: SupabaseCli, supabase_like_db: Database, tmp_path: Path
) -> None:
    db = supabase_like_db
    _legacy_application(db)
    baseline_only = _push(supabase_cli, db, _workdir(tmp_path, up_to=BASELINE.version))
    assert baseline_only.returncode == 0, baseline_only.stdout + baseline_only.stderr

    with psycopg.connect(db.url) as application:
        # The application writes a legacy `failed` and has not committed yet.
        application.execute(
            "insert into deep_memory_training_runs (dataset, status) values ('late', 'failed')"
        )
        pushing = supabase_cli.start(
            "db",
            "push",
            "--db-url",
            _db_url(db),
            "--include-all",
            "--yes",
            workdir=_workdir(tmp_path),
        )
        try:
            _wait_for_lock_wait(db, pushing)
        finally:
            application.commit()
        out, err = pushing.communicate(timeout=120)
    assert pushing.returncode == 0, out + err
    assert _statuses(db)["late"] == "generating_failed"
    assert _history(db) == [(m.version, m.name) for m in discover()]


def _wait_for_lock_wait(db: Database, pushing: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not db.execute(
        "select 1 from pg_stat_activity where datname = current_database()"
        " and wait_event_type = 'Lock'"
    ):
        assert pushing.poll() is None, pushing.communicate()
        assert time.monotonic() < deadline, "supabase db push never waited for the lock"
        time.sleep(0.05)
