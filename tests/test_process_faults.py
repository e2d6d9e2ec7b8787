"""The parent flow in a real process, interrupted, terminated and killed.

Prefect 3 marks a flow run Crashed and runs `on_crashed` on KeyboardInterrupt
(SIGINT) and SIGTERM; after SIGKILL nothing runs, and the run must wait for
the sweep to find it dead.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from dmflow.generation.answers import UNRECORDED_LIMIT
from dmflow.models import TrainingRun
from dmflow.status import RunStatus
from dmflow.store.postgres import PostgresRunStore
from flows.recovery import recover_failed_runs
from tests.fixtures.activeloop_server import CORPUS, ActiveloopServer, JobScript
from tests.fixtures.cli import clean_env
from tests.fixtures.llm_server import LLMServer, Reply, valid_json
from tests.fixtures.postgres import Database
from tests.fixtures.processes import processes_in_session, signal_and_wait, start_worker, wait_until
from tests.test_recovery import duplicate_pairs

BIN = Path(sys.executable).parent
IN_FLIGHT = 4
"""Requests in flight at once (the LLM concurrency of `slow_llm`)."""


def start_parent_flow(env: dict[str, str], **parameters: object) -> subprocess.Popen[bytes]:
    return start_worker("tests.fixtures.flow_worker", json.dumps(parameters), env=env)


def the_run(store: PostgresRunStore, dataset: str) -> TrainingRun | None:
    runs = store.list_runs(dataset=dataset)
    return runs[0] if runs else None


def flow_run_state(flow_run_id: UUID) -> StateType:
    async def read() -> StateType:
        async with get_client() as client:
            state = (await client.read_flow_run(flow_run_id)).state
            assert state is not None
            return state.type

    return asyncio.run(read())


def generating(store: PostgresRunStore, dataset: str, chunks: int = 32) -> Callable[[], bool]:
    def condition() -> bool:
        run = the_run(store, dataset)
        return run is not None and run.processed_chunks >= chunks

    return condition


@pytest.fixture
def slow_llm(
    flow_env: dict[str, str], llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    llm_server.latency_s = 0.05
    values = {
        "DMFLOW_LLM_BASE_URL": llm_server.url,
        "DMFLOW_LLM_API_KEY": "test-key",
        "DMFLOW_LLM_CONCURRENCY": str(IN_FLIGHT),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**flow_env, **values}


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_or_terminated_during_generation_is_generating_failed(
    slow_llm: dict[str, str],
    store: PostgresRunStore,
    sample_dataset: str,
    llm_server: LLMServer,
    sent: signal.Signals,
) -> None:
    # The endpoint holds every request after the first 48 until the signal is sent: on a
    # loaded machine the run must not finish before this test gets to send it (Prefect
    # rightly ignores a signal that lands after the flow run has completed).
    sent_already = threading.Event()
    answered = itertools.count()

    def held(text: str, attempt: int) -> Reply:
        if next(answered) >= 48:
            sent_already.wait(60)
        return valid_json(text, attempt)

    llm_server.script = held
    worker = start_parent_flow(slow_llm, dataset=sample_dataset, generator="openai", batch_size=16)
    try:
        wait_until(worker, generating(store, sample_dataset), "generation had begun")
        worker.send_signal(sent)
        sent_already.set()
        worker.wait(timeout=60)
    finally:
        sent_already.set()
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
    run = the_run(store, sample_dataset)
    assert run is not None
    assert run.status is RunStatus.GENERATING_FAILED
    assert run.error_message
    assert run.flow_run_id is not None
    assert flow_run_state(run.flow_run_id) is StateType.CRASHED


def test_terminated_while_polling_a_managed_job_is_training_failed(
    managed_env: dict[str, str], activeloop_server: ActiveloopServer, store: PostgresRunStore
) -> None:
    activeloop_server.script = JobScript(outcome="training")
    worker = start_parent_flow(managed_env, dataset=CORPUS, trainer="managed", max_pairs=300)
    signal_and_wait(
        worker, lambda: activeloop_server.count("status") >= 2, "the job was polled", signal.SIGTERM
    )
    run = the_run(store, CORPUS)
    assert run is not None
    assert run.status is RunStatus.TRAINING_FAILED
    assert run.deeplake_job_id in activeloop_server.jobs
    assert run.error_message


def test_sigkill_mid_generation_is_known_dead_at_once_and_recovers_without_repeats(
    slow_llm: dict[str, str],
    store: PostgresRunStore,
    db: Database,
    sample_dataset: str,
    sample_texts: dict[str, str],
    llm_server: LLMServer,
) -> None:
    worker = start_parent_flow(slow_llm, dataset=sample_dataset, generator="openai", batch_size=16)
    signal_and_wait(
        worker, generating(store, sample_dataset, 100), "generation was midway", signal.SIGKILL
    )
    killed = the_run(store, sample_dataset)
    assert killed is not None and killed.flow_run_id is not None
    assert killed.status is RunStatus.GENERATING  # no hook runs after SIGKILL
    recorded_before = store.recorded_chunk_ids(killed.id)
    requested_before = {c: llm_server.requests_for(t) for c, t in sample_texts.items()}

    # The heartbeat is fresh and Prefect still shows the flow run Running, but the run's
    # lease names a process that is gone from this host: the sweep knows it is dead at
    # once, fails it, crashes its flow run in Prefect and recovers it. No Prefect command.
    assert killed.driver_pid == worker.pid
    report = asyncio.run(recover_failed_runs())
    assert killed.id in report.reconciled and killed.id in report.recovered, report

    assert flow_run_state(killed.flow_run_id) is StateType.CRASHED

    done = store.get_run(killed.id)
    assert done.status is RunStatus.COMPLETED, done.error_message
    assert done.attempt == 1
    assert done.processed_chunks == len(sample_texts)
    assert duplicate_pairs(db) == 0
    # A chunk recorded before the kill was never requested again; only the batches that
    # were in flight when the process died were asked twice.
    again = {
        chunk
        for chunk, text in sample_texts.items()
        if llm_server.requests_for(text) > requested_before[chunk] and requested_before[chunk]
    }
    assert again.isdisjoint(recorded_before)
    assert len(again) <= IN_FLIGHT + UNRECORDED_LIMIT


@pytest.mark.parametrize(
    ("sent", "how"),
    [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")],
    ids=["ctrl-c", "sigterm", "sighup"],
)
def test_dmflow_run_interrupted_exits_quickly_and_says_how_to_resume(
    slow_llm: dict[str, str],
    store: PostgresRunStore,
    sample_dataset: str,
    sent: signal.Signals,
    how: str,
) -> None:
    command = subprocess.Popen(
        [str(BIN / "dmflow"), "run", sample_dataset, "--generator", "openai", "--batch-size", "16"],
        env=clean_env(**slow_llm),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        wait_until(command, generating(store, sample_dataset), "generation had begun")
        sent_at = time.monotonic()
        if sent is signal.SIGTERM:
            os.kill(command.pid, sent)  # `kill PID`
        else:  # a terminal's Ctrl-C, or its closing, reaches the whole foreground group
            os.killpg(command.pid, sent)
        _, stderr = command.communicate(timeout=30)
        exited_after = time.monotonic() - sent_at
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
    assert processes_in_session(command.pid) == []
    run = the_run(store, sample_dataset)
    assert run is not None
    assert command.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"interrupted ({how}" in stderr and f"dmflow recover {str(run.id)[:8]}" in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert run.status is RunStatus.GENERATING_FAILED
    assert run.error_message is not None
    assert run.error_message.startswith(f"interrupted ({how}")
    assert f"resume with `dmflow recover {str(run.id)[:8]}`" in run.error_message
    # Not a speed target: it once retried a dead server for minutes after a Ctrl-C.
    assert exited_after < 10, exited_after

    resumed = subprocess.run(
        [str(BIN / "dmflow"), "recover", str(run.id)],
        env=clean_env(**slow_llm),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert store.get_run(run.id).status is RunStatus.COMPLETED


def start_dmflow(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`dmflow ARGS` as a terminal's foreground job: a process group of its own."""
    return subprocess.Popen(
        [str(BIN / "dmflow"), *args],
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_9_once(command: subprocess.Popen[str], condition: Callable[[], bool], what: str) -> None:
    """SIGKILL to the whole process group once `condition` holds: nothing gets to run."""
    try:
        wait_until(command, condition, what)
    finally:
        os.killpg(command.pid, signal.SIGKILL)
        command.communicate(timeout=30)
    assert processes_in_session(command.pid) == []


def dmflow_recover(env: dict[str, str], run_id: UUID) -> subprocess.CompletedProcess[str]:
    recovered = subprocess.run(
        [str(BIN / "dmflow"), "recover", str(run_id)],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )
    assert recovered.returncode == 0, recovered.stderr[-2000:]
    assert "Traceback" not in recovered.stderr
    return recovered


@pytest.mark.parametrize("when", ["at-start", "mid-generation"])
def test_dmflow_run_killed_then_dmflow_recover_completes_and_redoes_only_what_was_in_flight(
    slow_llm: dict[str, str],
    store: PostgresRunStore,
    db: Database,
    sample_dataset: str,
    sample_texts: dict[str, str],
    llm_server: LLMServer,
    when: str,
) -> None:
    command = start_dmflow(slow_llm, "run", sample_dataset, "--generator", "openai")
    at_least = 0 if when == "at-start" else len(sample_texts) // 2

    def reached() -> bool:
        run = the_run(store, sample_dataset)
        return run is not None and run.processed_chunks >= at_least

    kill_9_once(command, reached, when)
    killed = the_run(store, sample_dataset)
    assert killed is not None and killed.status is RunStatus.GENERATING
    received_at_kill = llm_server.total_requests
    # Usage is recorded with the chunks: what the endpoint received and no record counts
    # is at most what was sent since the last record.
    assert 0 <= received_at_kill - killed.usage.requests <= (IN_FLIGHT + UNRECORDED_LIMIT)

    # The lease names a process gone from this host: no Prefect command, no waiting.
    dmflow_recover(slow_llm, killed.id)

    done = store.get_run(killed.id)
    assert done.status is RunStatus.COMPLETED, done.error_message
    assert done.processed_chunks == len(sample_texts)
    assert duplicate_pairs(db) == 0
    answered_twice = [t for t in sample_texts.values() if llm_server.requests_for(t) > 1]
    assert len(answered_twice) <= IN_FLIGHT + UNRECORDED_LIMIT
    assert done.usage.requests == llm_server.total_requests - (
        received_at_kill - killed.usage.requests
    )


def test_dmflow_run_killed_while_training_then_dmflow_recover_completes(
    managed_env: dict[str, str], activeloop_server: ActiveloopServer, store: PostgresRunStore
) -> None:
    activeloop_server.script = JobScript(outcome="training")
    command = start_dmflow(managed_env, "run", CORPUS, "--trainer", "managed", "--max-pairs", "300")
    kill_9_once(command, lambda: activeloop_server.count("status") >= 2, "the job was polled")
    killed = the_run(store, CORPUS)
    assert killed is not None and killed.status is RunStatus.TRAINING
    assert killed.deeplake_job_id in activeloop_server.jobs
    activeloop_server.jobs[killed.deeplake_job_id].script = JobScript(outcome="completed")

    dmflow_recover(managed_env, killed.id)

    done = store.get_run(killed.id)
    assert done.status is RunStatus.COMPLETED, done.error_message
    assert done.pair_count == killed.pair_count
