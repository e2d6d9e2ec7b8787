"""The generation subflow end to end: real DeepLake, real Postgres, real Prefect."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType

from dmflow.chunks import Chunk
from dmflow.generation.local import LocalQuestionGenerator
from dmflow.status import RunStatus
from dmflow.store.postgres import PostgresRunStore
from dmflow.testing.asking import ask
from flows.generation import generate_training_data
from tests.fixtures import llm_server as scripts
from tests.fixtures.llm_server import LLMServer
from tests.fixtures.postgres import Database
from tests.fixtures.processes import signal_and_wait, start_worker

UNSETTLED = {StateType.PENDING, StateType.RUNNING, StateType.SCHEDULED}


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, flow_env: dict[str, str], llm_server: LLMServer
) -> dict[str, str]:
    """flow_env plus the local LLM test server as the openai generator's endpoint."""
    values = {
        "DMFLOW_LLM_BASE_URL": llm_server.url,
        "DMFLOW_LLM_API_KEY": "sk-test",
        "DMFLOW_LLM_TIMEOUT_S": "5",
        "DMFLOW_LLM_MAX_ATTEMPTS": "3",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**flow_env, **values}


def ledger_stats(db: Database, run_id: object) -> tuple[int, int, int]:
    """(ledger rows, distinct ledger chunks, pairs whose (chunk, question) repeats)."""
    rows, distinct = db.execute(
        "select count(*), count(distinct chunk_id) from deep_memory_training_chunks"
        " where training_run_id = %s",
        (run_id,),
    )[0]
    repeated = db.execute(
        "select count(*) from (select chunk_id, question_text from deep_memory_training_pairs"
        " where training_run_id = %s group by 1, 2 having count(*) > 1) d",
        (run_id,),
    )[0][0]
    return rows, distinct, repeated


def test_local_generation_end_to_end(
    env: dict[str, str],
    store: PostgresRunStore,
    db: Database,
    sample_dataset: str,
    sample_texts: dict[str, str],
) -> None:
    run = store.create_run(sample_dataset, params={"generator": "local"})
    summary = asyncio.run(generate_training_data(run.id))

    done = store.get_run(run.id)
    assert done.status is RunStatus.GENERATED
    assert done.total_chunks == done.processed_chunks == len(sample_texts)
    pairs = db.execute("select count(*) from deep_memory_training_pairs")[0][0]
    assert done.pair_count == pairs == summary.pair_count
    assert 3 * len(sample_texts) <= pairs <= 4 * len(sample_texts)
    assert ledger_stats(db, run.id) == (len(sample_texts), len(sample_texts), 0)
    assert done.heartbeat_at is not None


def test_openai_generation_end_to_end(
    env: dict[str, str],
    store: PostgresRunStore,
    sample_dataset: str,
    sample_texts: dict[str, str],
    llm_server: LLMServer,
) -> None:
    run = store.create_run(sample_dataset, params={"generator": "openai", "batch_size": 32})
    asyncio.run(generate_training_data(run.id))
    done = store.get_run(run.id)
    assert done.status is RunStatus.GENERATED
    assert done.processed_chunks == len(sample_texts)
    assert done.usage.requests == len(sample_texts) == llm_server.total_requests
    assert done.usage.prompt_tokens > 0
    assert all(llm_server.requests_for(text) == 1 for text in sample_texts.values())


def test_generation_stops_at_max_pairs(
    env: dict[str, str], store: PostgresRunStore, sample_dataset: str
) -> None:
    run = store.create_run(
        sample_dataset, params={"generator": "local", "max_pairs": 50, "batch_size": 8}
    )
    summary = asyncio.run(generate_training_data(run.id))
    done = store.get_run(run.id)
    assert (done.status, done.pair_count) == (RunStatus.GENERATED, 50)
    assert done.facts.max_pairs_reached and summary.facts.max_pairs_reached
    assert "max_pairs_reached" not in done.params  # the user's parameters stay theirs
    assert done.processed_chunks < done.total_chunks


def test_resume_skips_recorded_chunks(
    env: dict[str, str],
    store: PostgresRunStore,
    db: Database,
    sample_dataset: str,
    sample_texts: dict[str, str],
    llm_server: LLMServer,
) -> None:
    run = store.create_run(sample_dataset, params={"generator": "openai"})
    first = [Chunk(i, t) for i, t in list(sample_texts.items())[:100]]
    batch = asyncio.run(ask(LocalQuestionGenerator(), first))
    run = store.record_batch(run, batch.results, batch.usage)

    asyncio.run(generate_training_data(run.id))

    done = store.get_run(run.id)
    assert done.processed_chunks == done.total_chunks == len(sample_texts)
    assert all(llm_server.requests_for(c.text) == 0 for c in first)
    assert llm_server.total_requests == len(sample_texts) - len(first)
    assert ledger_stats(db, run.id) == (len(sample_texts), len(sample_texts), 0)


def test_a_bad_key_marks_the_run_generating_failed(
    env: dict[str, str], store: PostgresRunStore, sample_dataset: str, llm_server: LLMServer
) -> None:
    llm_server.script = scripts.unauthorized
    run = store.create_run(sample_dataset, params={"generator": "openai"})
    with pytest.raises(Exception, match="DMFLOW_LLM_API_KEY"):
        asyncio.run(generate_training_data(run.id))
    failed = store.get_run(run.id)
    assert failed.status is RunStatus.GENERATING_FAILED
    assert failed.error_message is not None
    assert "GenerationFailed" in failed.error_message and "API key" in failed.error_message


def test_an_endpoint_that_answers_nothing_leaves_every_chunk_to_ask_again(
    env: dict[str, str],
    store: PostgresRunStore,
    sample_dataset: str,
    llm_server: LLMServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The endpoint is down: a chunk it never answered has no result. Recorded as skipped,
    # it would never be asked again when the run is recovered.
    llm_server.script = lambda text, n: scripts.Reply(503, "{}", {"Retry-After": "0"})
    monkeypatch.setenv("DMFLOW_LLM_OUTAGE_WAIT_S", "2")
    run = store.create_run(sample_dataset, params={"generator": "openai", "batch_size": 16})
    with pytest.raises(Exception, match="failed every request for 2 s"):
        asyncio.run(generate_training_data(run.id))
    failed = store.get_run(run.id)
    assert failed.status is RunStatus.GENERATING_FAILED
    assert store.recorded_chunk_ids(run.id) == set()
    assert failed.processed_chunks == 0 and llm_server.total_requests > 0
    assert failed.usage.requests > 0  # what was sent is still counted


def test_a_fatal_error_still_records_what_the_batches_in_flight_finished(
    env: dict[str, str],
    store: PostgresRunStore,
    db: Database,
    sample_dataset: str,
    sample_texts: dict[str, str],
    llm_server: LLMServer,
) -> None:
    # One chunk's request is refused (401) only after every other chunk has been answered,
    # while the 15 others of its batch wait to be recorded with it.
    poison_id, poison = list(sample_texts.items())[20]

    def refused_late(text: str, attempt: int) -> scripts.Reply:
        if text == poison:  # refused once every other chunk was asked (and answered)
            deadline = time.monotonic() + 120
            while len(llm_server.requests_by_text) < len(sample_texts):
                assert time.monotonic() < deadline, "the other chunks were never asked"
                time.sleep(0.05)
            reply = scripts.unauthorized(text, attempt)
            reply.delay_s = 2.0  # for the last answers to reach the generator
            return reply
        return scripts.valid_json(text, attempt)

    llm_server.script = refused_late
    run = store.create_run(sample_dataset, params={"generator": "openai", "batch_size": 16})
    with pytest.raises(Exception, match="DMFLOW_LLM_API_KEY"):
        asyncio.run(generate_training_data(run.id))

    failed = store.get_run(run.id)
    assert failed.status is RunStatus.GENERATING_FAILED
    assert store.recorded_chunk_ids(run.id) == set(sample_texts) - {poison_id}
    assert failed.processed_chunks == len(sample_texts) - 1
    assert ledger_stats(db, run.id) == (len(sample_texts) - 1, len(sample_texts) - 1, 0)
    # Every request the endpoint received is counted, the refused one too.
    # (a request that timed out under load and was sent again is counted as sent)
    assert failed.usage.requests == llm_server.total_requests >= len(sample_texts)


def test_a_missing_dataset_marks_the_run_generating_failed(
    env: dict[str, str], store: PostgresRunStore, tmp_path: Path
) -> None:
    run = store.create_run(str(tmp_path / "missing"), params={"generator": "local"})
    with pytest.raises(Exception, match="no DeepLake dataset"):
        asyncio.run(generate_training_data(run.id))
    failed = store.get_run(run.id)
    assert failed.status is RunStatus.GENERATING_FAILED
    assert failed.error_message is not None and "no DeepLake dataset" in failed.error_message


def test_sigkill_midway_then_resume_repeats_nothing(
    env: dict[str, str],
    store: PostgresRunStore,
    db: Database,
    sample_dataset: str,
    sample_texts: dict[str, str],
    llm_server: LLMServer,
) -> None:
    llm_server.latency_s = 0.05
    run = store.create_run(sample_dataset, params={"generator": "openai", "batch_size": 16})
    worker = start_worker(
        "tests.fixtures.generation_worker",
        str(run.id),
        env={**env, "DMFLOW_LLM_CONCURRENCY": "4"},
    )
    signal_and_wait(
        worker,
        lambda: store.get_run(run.id).processed_chunks >= len(sample_texts) // 2,
        "generation was midway",
        signal.SIGKILL,
    )
    killed = store.get_run(run.id)
    assert killed.status is RunStatus.GENERATING  # no hook runs after SIGKILL
    assert 0 < killed.processed_chunks < len(sample_texts)
    recorded_before = store.recorded_chunk_ids(run.id)
    llm_server.reset()

    asyncio.run(generate_training_data(run.id))

    done = store.get_run(run.id)
    assert done.status is RunStatus.GENERATED
    assert done.processed_chunks == len(sample_texts)
    assert ledger_stats(db, run.id) == (len(sample_texts), len(sample_texts), 0)
    assert sum(llm_server.requests_for(sample_texts[c]) for c in recorded_before) == 0
    assert llm_server.total_requests == len(sample_texts) - len(recorded_before)


def test_when_one_batch_fails_the_phase_its_siblings_end_cancelled_not_crashed(
    env: dict[str, str], store: PostgresRunStore, sample_dataset: str, llm_server: LLMServer
) -> None:
    llm_server.latency_s = 0.2
    asked = 0

    def refused_on_the_tenth(text: str, attempt: int) -> scripts.Reply:
        nonlocal asked
        asked += 1
        return (
            scripts.unauthorized(text, attempt)
            if asked == 10
            else scripts.valid_json(text, attempt)
        )

    llm_server.script = refused_on_the_tenth
    run = store.create_run(sample_dataset, params={"generator": "openai", "batch_size": 4})
    state: Any = asyncio.run(generate_training_data(run.id, return_state=True))  # type: ignore[arg-type]
    assert state.is_failed()

    async def task_states() -> dict[str, StateType]:
        async with get_client() as client:
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
                )
            )
        return {t.name: t.state.type for t in task_runs if t.state is not None}

    # Task run states reach the server as events its recorder stores a moment
    # later, so a read right after the flow ends can still see RUNNING.
    deadline = time.monotonic() + 30
    states = asyncio.run(task_states())
    while not states or any(s in UNSETTLED for s in states.values()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
        states = asyncio.run(task_states())
    generating = {n: s for n, s in states.items() if n.startswith("generate-")}
    assert StateType.FAILED in generating.values()  # the batch that met the refused key
    assert StateType.CANCELLED in generating.values()  # its siblings in flight
    assert StateType.CRASHED not in states.values(), states
