"""The Supabase REST adapter: its wire shape, and the same behaviour as the Postgres one.

supabase-py runs for real; its HTTP goes to `PostgrestEmulator`, which executes
each request against the real test database as the role in the key.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from dmflow.errors import (
    ConcurrentUpdate,
    ConfigurationError,
    DatabaseUnavailable,
    RunBlocked,
    RunNotDeletable,
    RunNotFound,
)
from dmflow.models import ChunkResult
from dmflow.status import RunStatus
from dmflow.store.base import RunStore
from dmflow.store.supabase import SupabaseRunStore
from tests.fixtures.postgres import Database
from tests.fixtures.postgrest import SUPABASE_URL, PostgrestEmulator, fake_jwt

SERVICE_KEY = fake_jwt("service_role")


@pytest.fixture(params=["postgres", "supabase"])
def any_store(request: pytest.FixtureRequest) -> RunStore:
    return request.getfixturevalue("store" if request.param == "postgres" else "supabase_store")  # type: ignore[no-any-return]


# -- the wire -----------------------------------------------------------------


def test_create_run_is_one_rpc(
    supabase_store: SupabaseRunStore, postgrest: PostgrestEmulator
) -> None:
    flow_run_id = uuid.uuid4()
    run = supabase_store.create_run(
        "hub://org/ds", params={"generator": "local"}, flow_run_id=flow_run_id
    )
    [sent] = postgrest.requests
    assert (sent.method, sent.path) == ("POST", "/rest/v1/rpc/dmflow_create_run")
    assert sent.body == {
        "p_dataset": "hub://org/ds",
        "p_user_id": None,
        "p_params": {"generator": "local"},
        "p_flow_run_id": str(flow_run_id),
    }
    assert sent.headers["apikey"] == SERVICE_KEY
    assert sent.headers["authorization"] == f"Bearer {SERVICE_KEY}"
    assert sent.headers["content-profile"] == "public"
    assert "prefer" not in sent.headers  # a plain call: the function's row comes back
    assert run.status is RunStatus.GENERATING and run.flow_run_id == flow_run_id


def test_transition_and_batch_rpc_bodies(
    supabase_store: SupabaseRunStore, postgrest: PostgrestEmulator
) -> None:
    run = supabase_store.create_run("ds")
    supabase_store.record_batch(
        run, [ChunkResult.done("c1", ["What is c1 about?"], "c1 text")], usage={"requests": 1}
    )
    supabase_store.transition(run, RunStatus.GENERATING_FAILED, error_message="boom")
    _, batch, transition = postgrest.requests
    assert batch.path == "/rest/v1/rpc/dmflow_record_batch"
    assert batch.body == {
        "p_run_id": str(run.id),
        "p_attempt": 0,
        "p_chunks": [{"chunk_id": "c1", "outcome": "done", "reason": None, "pair_count": 1}],
        "p_pairs": [
            {
                "question_text": "What is c1 about?",
                "chunk_id": "c1",
                "chunk_preview": "c1 text",
                "relevance_score": 1.0,
            }
        ],
        "p_usage": {"requests": 1},
        "p_max_pairs": None,
        "p_record_key": None,
    }
    assert transition.path == "/rest/v1/rpc/dmflow_transition_run"
    assert transition.body == {
        "p_run_id": str(run.id),
        "p_from_status": "generating",
        "p_to_status": "generating_failed",
        "p_attempt": 0,
        "p_bump_attempt": False,
        "p_error_message": "boom",
        "p_flow_run_id": None,
    }


def test_reads_are_single_table_gets(
    supabase_store: SupabaseRunStore, postgrest: PostgrestEmulator
) -> None:
    run = supabase_store.create_run("ds")
    postgrest.requests.clear()
    supabase_store.get_run(run.id)
    supabase_store.list_runs(dataset="ds", limit=7)
    supabase_store.recorded_chunk_ids(run.id)
    assert [(r.method, r.path, r.params) for r in postgrest.requests] == [
        ("GET", "/rest/v1/deep_memory_training_runs", {"select": "*", "id": f"eq.{run.id}"}),
        (
            "GET",
            "/rest/v1/deep_memory_training_runs",
            {"select": "*", "dataset": "eq.ds", "order": "created_at.desc", "limit": "7"},
        ),
        (
            "GET",
            "/rest/v1/deep_memory_training_chunks",
            {
                "select": "chunk_id",
                "training_run_id": f"eq.{run.id}",
                "order": "chunk_id.asc",
                "offset": "0",
                "limit": "1000",
            },
        ),
    ]


def test_recorded_chunk_ids_pages_past_max_rows(
    supabase_store: SupabaseRunStore, postgrest: PostgrestEmulator
) -> None:
    run = supabase_store.create_run("ds")
    results = [ChunkResult.skipped(f"c{n:04d}", "empty") for n in range(1500)]
    supabase_store.record_batch(run, results)
    postgrest.requests.clear()
    assert supabase_store.recorded_chunk_ids(run.id) == {r.chunk_id for r in results}
    assert [r.params["offset"] for r in postgrest.requests] == ["0", "1000"]


# -- errors -------------------------------------------------------------------


def test_sql_errors_become_dmflow_errors(supabase_store: SupabaseRunStore) -> None:
    run = supabase_store.create_run("ds")
    with pytest.raises(RunBlocked, match=str(run.id)):
        supabase_store.create_run("ds")
    with pytest.raises(RunNotDeletable, match="generating"):
        supabase_store.delete_failed_run(run.id)
    with pytest.raises(RunNotFound):
        supabase_store.delete_failed_run(uuid.uuid4())
    with pytest.raises(RunNotFound):
        supabase_store.get_run(uuid.uuid4())
    supabase_store.transition(run, RunStatus.GENERATED)
    with pytest.raises(ConcurrentUpdate, match="generated at attempt 0"):
        supabase_store.transition(run, RunStatus.GENERATING_FAILED)


def test_the_anon_key_is_refused_with_advice(postgrest: PostgrestEmulator) -> None:
    anon = SupabaseRunStore(
        SUPABASE_URL, SecretStr(fake_jwt("anon")), http_client=postgrest.client()
    )
    with pytest.raises(ConfigurationError, match="service-role key"):
        anon.create_run("ds")
    with pytest.raises(ConfigurationError, match="service-role key"):
        anon.list_runs()  # the public key reads nothing either


def test_a_broken_network_is_reported(
    supabase_store: SupabaseRunStore, postgrest: PostgrestEmulator
) -> None:
    postgrest.fail_next.append(httpx.ConnectError("connection refused"))
    with pytest.raises(DatabaseUnavailable, match="DMFLOW_SUPABASE_URL"):
        supabase_store.create_run("ds")
    assert supabase_store.create_run("ds").status is RunStatus.GENERATING


# -- one behaviour, two adapters ----------------------------------------------


def test_the_run_lifecycle_through_either_adapter(any_store: RunStore, db: Database) -> None:
    run = any_store.create_run("ds")
    results = [
        ChunkResult.done("c1", ["What is one?", "Why one?"], "one"),
        ChunkResult.skipped("c2", "too short"),
    ]
    run = any_store.record_batch(run, results, usage={"requests": 2})
    again = any_store.record_batch(run, results, usage={"requests": 2})
    assert (again.processed_chunks, again.pair_count, again.usage.counted()) == (
        2,
        2,
        {"requests": 2},
    )
    assert any_store.recorded_chunk_ids(run.id) == {"c1", "c2"}

    failed = any_store.transition(again, RunStatus.GENERATING_FAILED, error_message="LLM down")
    assert failed.error_message == "LLM down"
    with pytest.raises(RunBlocked, match=f"dmflow delete {str(run.id)[:8]}"):
        any_store.create_run("ds")
    resumed = any_store.transition(failed, RunStatus.GENERATING)
    assert resumed.attempt == 1 and resumed.error_message is None
    failed = any_store.transition(resumed, RunStatus.GENERATING_FAILED, error_message="again")

    any_store.delete_failed_run(failed.id)
    assert db.execute("select count(*) from deep_memory_training_pairs") == [(0,)]
    assert [r.id for r in any_store.list_runs()] == []


# -- live (opt-in) ------------------------------------------------------------

LIVE_URL = os.environ.get("DMFLOW_LIVE_SUPABASE_URL")
LIVE_KEY = os.environ.get("DMFLOW_LIVE_SUPABASE_KEY")


@pytest.fixture
def live_store() -> Iterator[SupabaseRunStore]:
    if not (LIVE_URL and LIVE_KEY):
        pytest.skip(
            "set DMFLOW_LIVE_SUPABASE_URL and DMFLOW_LIVE_SUPABASE_KEY (service role) "
            "to run against a real Supabase project with the migrations pushed"
        )
    live = SupabaseRunStore(LIVE_URL, SecretStr(LIVE_KEY))
    yield live
    live.close()


@pytest.mark.live
def test_live_supabase_lifecycle(live_store: SupabaseRunStore) -> None:
    dataset = f"dmflow-live-test-{uuid.uuid4().hex[:8]}"
    run = live_store.create_run(dataset)
    try:
        run = live_store.record_batch(run, [ChunkResult.done("c1", ["What is c1?"], "c1")])
        assert run.pair_count == 1
        run = live_store.transition(run, RunStatus.GENERATING_FAILED, error_message="live test")
    finally:
        live_store.delete_failed_run(run.id)


def test_pairs_are_read_in_pages_through_either_adapter(any_store: RunStore) -> None:
    run = any_store.create_run("ds")
    results = [
        ChunkResult.done(f"c{n:03d}", [f"What is item {n} about?", f"Why item {n}?"], f"text {n}")
        for n in range(25)
    ]
    any_store.record_batch(run, results)
    pages = list(any_store.iter_pairs(run.id, page_size=20))
    assert [len(p) for p in pages] == [20, 20, 10]
    seen = {(p.chunk_id, p.question_text) for page in pages for p in page}
    assert len(seen) == 50 and ("c007", "Why item 7?") in seen
