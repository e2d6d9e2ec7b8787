"""The phase engines in-process, without Prefect: the rules of entering a phase, holding
through an LLM outage, giving up on it, and counting usage, against a real PostgreSQL,
a real DeepLake dataset and the real openai client talking to the local test server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from dmflow.errors import ConcurrentUpdate
from dmflow.generation.base import GenerationFailed
from dmflow.generation.outage import EndpointOutage
from dmflow.models import TrainingRun
from dmflow.phases.generation import generate
from dmflow.phases.steps import DirectSteps
from dmflow.phases.training import train
from dmflow.settings import Settings
from dmflow.status import Phase, RunStatus
from dmflow.store.base import RunStore
from dmflow.store.postgres import PostgresRunStore
from tests.fixtures import llm_server as scripts
from tests.fixtures.llm_server import LLMServer
from tests.fixtures.postgres import Database

LEASE = ("worker-1", 4242, None)


@pytest.fixture(params=["postgres", "supabase"])
def any_store(request: pytest.FixtureRequest) -> RunStore:
    """Each adapter: the rules live in one SQL function both call."""
    name = "store" if request.param == "postgres" else "supabase_store"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def enter(
    store: RunStore, run: TrainingRun, phase: Phase, *, attempt: int | None = None, **kw: Any
) -> TrainingRun:
    return store.enter_phase(
        run.id,
        phase,
        attempt=run.attempt if attempt is None else attempt,
        flow_run_id=kw.get("flow_run_id"),
        lease=kw.get("lease", LEASE),
    )


def test_entering_generation_leases_the_run_to_the_process(any_store: RunStore) -> None:
    driver = uuid.uuid4()
    run = any_store.create_run("ds", flow_run_id=driver)
    entered = enter(any_store, run, Phase.GENERATION, flow_run_id=driver)
    assert entered.status is RunStatus.GENERATING
    assert (entered.driver_host, entered.driver_pid) == ("worker-1", 4242)
    assert entered.heartbeat_at is not None


def test_a_run_created_with_a_lease_is_never_unclaimed(any_store: RunStore) -> None:
    """One transaction: a kill -9 right after the create leaves a run whose driver is known
    (and known gone), never a generating run that no process claims."""
    driver = uuid.uuid4()
    created = any_store.create_run("ds", flow_run_id=driver, lease=LEASE)
    assert created.status is RunStatus.GENERATING
    assert (created.driver_host, created.driver_pid) == ("worker-1", 4242)
    # The same flow run asking again (a Retry) gets that run back, still its own.
    again = any_store.create_run("ds", flow_run_id=driver, lease=("worker-2", 7, None))
    assert again.id == created.id and again.driver_host == "worker-2"
    failed = any_store.transition(again, RunStatus.GENERATING_FAILED)
    back = any_store.create_run("ds", flow_run_id=driver, lease=LEASE)
    assert back.id == failed.id and back.status is RunStatus.GENERATING_FAILED


def test_a_newer_attempt_or_another_driver_is_refused(any_store: RunStore) -> None:
    driver = uuid.uuid4()
    run = any_store.create_run("ds", flow_run_id=driver)
    with pytest.raises(ConcurrentUpdate):
        enter(any_store, run, Phase.GENERATION, attempt=run.attempt + 1, flow_run_id=driver)
    with pytest.raises(ConcurrentUpdate):
        enter(any_store, run, Phase.GENERATION, flow_run_id=uuid.uuid4())
    with pytest.raises(ConcurrentUpdate):  # training is not entered from generating
        enter(any_store, run, Phase.TRAINING, flow_run_id=driver)
    after = any_store.get_run(run.id)
    assert after.status is RunStatus.GENERATING and after.driver_pid is None


def test_a_phase_behind_the_run_is_left_as_it_is(any_store: RunStore) -> None:
    run = any_store.create_run("ds")
    generated = any_store.transition(run, RunStatus.GENERATED)
    assert enter(any_store, generated, Phase.GENERATION).status is RunStatus.GENERATED
    assert any_store.get_run(run.id).driver_pid is None


def test_entering_training_moves_a_generated_run_to_the_new_driver(any_store: RunStore) -> None:
    run = any_store.create_run("ds", flow_run_id=uuid.uuid4())
    generated = any_store.transition(run, RunStatus.GENERATED)
    recovering = uuid.uuid4()  # `dmflow recover` of a run generated with --no-train
    training = enter(any_store, generated, Phase.TRAINING, flow_run_id=recovering)
    assert training.status is RunStatus.TRAINING
    assert training.flow_run_id == recovering and training.driver_pid == 4242
    # The move happened once: a second flow run reaching it is refused.
    with pytest.raises(ConcurrentUpdate):
        enter(any_store, generated, Phase.TRAINING, flow_run_id=uuid.uuid4())
    completed = any_store.transition(training, RunStatus.COMPLETED)
    done = enter(any_store, completed, Phase.TRAINING, flow_run_id=recovering)
    assert done.status is RunStatus.COMPLETED
    with pytest.raises(ConcurrentUpdate):  # completed by another flow run: not this one's
        enter(any_store, completed, Phase.TRAINING, flow_run_id=uuid.uuid4())


@pytest.fixture
def settings(db: Database, llm_server: LLMServer, tmp_path: Any) -> Settings:
    return Settings(
        database_url=SecretStr(db.url),
        data_dir=tmp_path / "data",
        llm_base_url=llm_server.url,
        llm_api_key=SecretStr("sk-test"),
        llm_timeout_s=5,
        llm_max_attempts=3,
        llm_outage_wait_s=30,
        db_outage_wait_s=5,
    )


def entered_run(store: PostgresRunStore, dataset: str, **params: Any) -> TrainingRun:
    run = store.create_run(dataset, params={"batch_size": 16, **params})
    return enter(store, run, Phase.GENERATION)


def test_generation_then_training_in_process(
    store: PostgresRunStore, settings: Settings, sample_dataset: str, sample_texts: dict[str, str]
) -> None:
    steps = DirectSteps()
    run = entered_run(store, sample_dataset, generator="local")
    generated = asyncio.run(generate(run, store, settings, steps))
    assert generated.status is RunStatus.GENERATED
    assert generated.processed_chunks == len(sample_texts) == generated.total_chunks
    assert f"generation-summary-{run.id}" in steps.summaries
    assert steps.progress_seen[-1] == len(sample_texts)

    training = enter(store, generated, Phase.TRAINING)
    completed = asyncio.run(train(training, store, settings, steps))
    assert completed.status is RunStatus.COMPLETED
    assert completed.metrics.train_pairs > 0 and "recall@10" in completed.metrics.after
    assert "| @10 |" in steps.summaries[f"training-summary-{run.id}"]


def test_a_short_llm_outage_is_held_through_and_skips_nothing(
    store: PostgresRunStore,
    settings: Settings,
    sample_dataset: str,
    sample_texts: dict[str, str],
    llm_server: LLMServer,
) -> None:
    down = scripts.outage(after_requests=60, seconds=3.0)
    llm_server.script = down
    run = entered_run(store, sample_dataset, generator="openai")
    done = asyncio.run(generate(run, store, settings, DirectSteps()))
    assert done.status is RunStatus.GENERATED
    assert done.processed_chunks == len(sample_texts)
    assert store.skipped_reasons(run.id) == {}
    assert down.failed > 0  # the outage happened, and cost only requests that failed:
    assert llm_server.total_requests == len(sample_texts) + down.failed
    assert done.usage.requests == llm_server.total_requests


def test_an_outage_past_the_wait_fails_with_where_the_run_stands(
    store: PostgresRunStore,
    settings: Settings,
    sample_dataset: str,
    llm_server: LLMServer,
) -> None:
    llm_server.script = scripts.outage(after_requests=40, seconds=600.0)
    run = entered_run(store, sample_dataset, generator="openai")
    short_wait = settings.model_copy(update={"llm_outage_wait_s": 1.5})
    with pytest.raises(EndpointOutage) as failed:
        asyncio.run(generate(run, store, short_wait, DirectSteps()))
    stopped = store.get_run(run.id)
    assert f"at {stopped.processed_chunks}/{stopped.total_chunks} chunks" in str(failed.value)
    assert f"dmflow recover {str(run.id)[:8]}" in str(failed.value)
    assert 0 < stopped.processed_chunks < 60
    assert store.skipped_reasons(run.id) == {}  # nothing given up for the outage


def test_a_refused_key_counts_each_request_sent_at_most_once_more_than_received(
    store: PostgresRunStore,
    settings: Settings,
    sample_dataset: str,
    llm_server: LLMServer,
) -> None:
    llm_server.script = scripts.unauthorized
    run = entered_run(store, sample_dataset, generator="openai")
    with pytest.raises(GenerationFailed, match="DMFLOW_LLM_API_KEY"):
        asyncio.run(generate(run, store, settings, DirectSteps()))
    counted = store.get_run(run.id).usage.requests
    received = llm_server.total_requests
    # README, "Usage": requests cancelled as the batch fails may be counted without
    # having reached the endpoint, at most one per request slot.
    assert received <= counted <= received + settings.llm_concurrency


def test_once_the_cap_is_met_nothing_more_is_asked(
    store: PostgresRunStore,
    settings: Settings,
    sample_dataset: str,
    llm_server: LLMServer,
) -> None:
    """Two batches of 32 chunks are in flight; the cap needs 2 chunks. The chunks still
    in flight when the cap is recorded are not asked: their answers could not be kept."""
    llm_server.latency_s = 0.2
    run = entered_run(store, sample_dataset, generator="openai", batch_size=32, max_pairs=8)
    done = asyncio.run(
        generate(run, store, settings.model_copy(update={"llm_concurrency": 4}), DirectSteps())
    )
    assert done.status is RunStatus.GENERATED and done.pair_count == 8
    assert llm_server.total_requests <= 16, llm_server.total_requests  # 64 before
    assert done.usage.requests >= llm_server.total_requests
