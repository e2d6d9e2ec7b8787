"""What Supabase's API roles may do: anon nothing, authenticated reads its own runs,
only service_role writes (and reads runs without an owner)."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from dmflow.models import ChunkResult
from dmflow.store.postgres import PostgresRunStore
from tests.fixtures.postgres import Database

TABLES = [
    "deep_memory_training_runs",
    "deep_memory_training_pairs",
    "deep_memory_training_chunks",
    "deep_memory_settings",
]


def as_role(
    db: Database, role: str, sql: str, params: object = None, sub: uuid.UUID | None = None
) -> list[tuple]:  # type: ignore[type-arg]
    with db.connect() as conn, conn.transaction():
        conn.execute(f"set local role {role}".encode())
        if sub is not None:
            conn.execute(
                "select set_config('request.jwt.claims', %s, true)",
                (json.dumps({"sub": str(sub), "role": role}),),
            )
        cur = conn.execute(sql.encode(), params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


@pytest.fixture
def runs(db: Database, store: PostgresRunStore) -> dict[str, uuid.UUID]:
    """A run, a pair, a ledger row and a settings row each for alice, bob and nobody."""
    alice, bob = uuid.uuid4(), uuid.uuid4()
    db.execute("insert into auth.users (id) values (%s), (%s)", (alice, bob))
    made = {
        "alice": alice,
        "bob": bob,
        "unowned": store.create_run("shared-ds").id,
        "alices": store.create_run("alice-ds", user_id=alice).id,
        "bobs": store.create_run("bob-ds", user_id=bob).id,
    }
    for key, owner in (("unowned", None), ("alices", alice), ("bobs", bob)):
        run = store.get_run(made[key])
        store.record_batch(run, [ChunkResult.done(f"{key}-c", [f"What is in {key}?"], "text")])
        db.execute(
            "insert into deep_memory_settings (user_id, last_training_run_id) values (%s, %s)",
            (owner, made[key]),
        )
    return made


ROW_OWNER = {
    "deep_memory_training_runs": "select id from deep_memory_training_runs",
    "deep_memory_training_pairs": "select training_run_id from deep_memory_training_pairs",
    "deep_memory_training_chunks": "select training_run_id from deep_memory_training_chunks",
    "deep_memory_settings": "select last_training_run_id from deep_memory_settings",
}
"""Per table: the run each visible row belongs to."""


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize(
    ("reader", "sees"),
    [
        ("anon", None),  # refused outright
        ("alice", {"alices"}),
        ("bob", {"bobs"}),
        ("service_role", {"alices", "bobs", "unowned"}),
    ],
)
def test_who_reads_which_rows(
    db: Database,
    runs: dict[str, uuid.UUID],
    table: str,
    reader: str,
    sees: set[str] | None,
) -> None:
    role = {"alice": "authenticated", "bob": "authenticated"}.get(reader, reader)
    sub = runs[reader] if reader in ("alice", "bob") else None
    if sees is None:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role(db, role, ROW_OWNER[table], sub=sub)
        return
    by_run = {value: key for key, value in runs.items() if key in ("alices", "bobs", "unowned")}
    seen = {by_run[row[0]] for row in as_role(db, role, ROW_OWNER[table], sub=sub)}
    assert seen == sees


def test_authenticated_without_a_user_reads_nothing(
    db: Database, runs: dict[str, uuid.UUID]
) -> None:
    for table in TABLES:
        assert as_role(db, "authenticated", ROW_OWNER[table]) == []


@pytest.mark.parametrize(
    "statement",
    [
        "insert into deep_memory_training_runs (dataset) values ('x')",
        "update deep_memory_training_runs set status = 'completed'",
        "delete from deep_memory_training_runs",
        "insert into deep_memory_training_pairs (training_run_id, question_text, chunk_id)"
        " values (gen_random_uuid(), 'q', 'c')",
        "delete from deep_memory_training_chunks",
        "update deep_memory_settings set enabled = true",
    ],
)
@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_api_roles_cannot_write(
    db: Database, runs: dict[str, uuid.UUID], role: str, statement: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_role(db, role, statement)


@pytest.mark.parametrize(
    "call",
    [
        "select dmflow_create_run('x')",
        "select dmflow_transition_run(gen_random_uuid(), 'generating', 'generated', 0)",
        "select dmflow_update_run_progress(gen_random_uuid(), 0)",
        "select dmflow_record_batch(gen_random_uuid(), 0, '[]', '[]')",
        "select dmflow_delete_failed_run(gen_random_uuid())",
        "select dmflow_claim_run(gen_random_uuid(), 0, 'host', 1, now())",
        "select dmflow_enter_phase(gen_random_uuid(), 'generation', 0, null, 'h', 1, now())",
        "select dmflow_create_leased_run('x', null, '{}', null, 'h', 1, now())",
    ],
)
@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_api_roles_cannot_call_the_functions(
    db: Database, runs: dict[str, uuid.UUID], role: str, call: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_role(db, role, call)


def test_service_role_writes_through_the_functions(
    db: Database, runs: dict[str, uuid.UUID]
) -> None:
    row = as_role(db, "service_role", "select id, status from dmflow_create_run('svc-ds')")
    assert row[0][1] == "generating"
    seen = as_role(db, "service_role", "select count(*) from deep_memory_training_runs")
    assert seen == [(4,)]  # bypasses RLS: sees every owner's runs


def test_every_table_is_granted_explicitly(db: Database) -> None:
    for table in TABLES:
        grants = dict(
            db.execute(
                "select grantee, string_agg(privilege_type, ',' order by privilege_type)"
                " from information_schema.role_table_grants"
                " where table_name = %s and grantee in ('anon','authenticated','service_role')"
                " group by grantee",
                (table,),
            )
        )
        assert grants == {
            "authenticated": "SELECT",
            "service_role": "DELETE,INSERT,SELECT,UPDATE",
        }, table


def test_runs_are_published_for_realtime(db: Database) -> None:
    # Realtime checks each change against the subscriber's row-level security: a user
    # hears about their own runs, as they read them.
    published = db.execute(
        "select tablename from pg_publication_tables where pubname = 'supabase_realtime'"
    )
    assert published == [("deep_memory_training_runs",)]
