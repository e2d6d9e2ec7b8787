"""What Supabase's API roles may do: anon reads, only service_role writes."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

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
    alice, bob = uuid.uuid4(), uuid.uuid4()
    db.execute("insert into auth.users (id) values (%s), (%s)", (alice, bob))
    return {
        "alice": alice,
        "bob": bob,
        "unowned": store.create_run("shared-ds").id,
        "alices": store.create_run("alice-ds", user_id=alice).id,
    }


def test_anon_reads_unowned_runs_only(db: Database, runs: dict[str, uuid.UUID]) -> None:
    seen = {row[0] for row in as_role(db, "anon", "select id from deep_memory_training_runs")}
    assert seen == {runs["unowned"]}


def test_authenticated_reads_own_runs(db: Database, runs: dict[str, uuid.UUID]) -> None:
    sql = "select id from deep_memory_training_runs"
    alice_sees = {r[0] for r in as_role(db, "authenticated", sql, sub=runs["alice"])}
    bob_sees = {r[0] for r in as_role(db, "authenticated", sql, sub=runs["bob"])}
    assert alice_sees == {runs["unowned"], runs["alices"]}
    assert bob_sees == {runs["unowned"]}


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
    assert seen == [(3,)]  # bypasses RLS: sees every owner's runs


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
            "anon": "SELECT",
            "authenticated": "SELECT",
            "service_role": "DELETE,INSERT,SELECT,UPDATE",
        }, table


def test_runs_are_published_for_realtime(db: Database) -> None:
    published = db.execute(
        "select tablename from pg_publication_tables where pubname = 'supabase_realtime'"
    )
    assert published == [("deep_memory_training_runs",)]
