"""When what dmflow depends on fails: the LLM endpoint down, the database gone or its
connections cut. Nothing is lost and nothing is paid twice; each test counts the
requests the endpoint received."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmflow.db.local_postgres import LocalPostgres
from dmflow.db.migrations import apply_migrations
from dmflow.generation.answers import UNRECORDED_LIMIT
from dmflow.status import RunStatus
from dmflow.store.postgres import PostgresRunStore
from tests.fixtures.cli import CliRunner, clean_env
from tests.fixtures.llm_server import LLMServer, outage
from tests.fixtures.postgres import Database
from tests.test_process_faults import dmflow_recover, start_dmflow, the_run

IN_FLIGHT = 4


@pytest.fixture
def llm_env(flow_env: dict[str, str], llm_server: LLMServer) -> dict[str, str]:
    llm_server.latency_s = 0.02
    return {
        **flow_env,
        "DMFLOW_LLM_BASE_URL": llm_server.url,
        "DMFLOW_LLM_API_KEY": "test-key",
        "DMFLOW_LLM_CONCURRENCY": str(IN_FLIGHT),
    }


def skipped_chunks(store: PostgresRunStore, run_id: object) -> int:
    return sum(store.skipped_reasons(run_id).values())  # type: ignore[arg-type]


def run_without_training(env: dict[str, str], dataset: str) -> subprocess.Popen[str]:
    return start_dmflow(env, "run", dataset, "--generator", "openai", "--no-train")


def finish(command: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    try:
        _, stderr = command.communicate(timeout=timeout)
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
            command.communicate(timeout=30)
    return command.returncode, stderr


def test_a_20_s_llm_outage_mid_run_holds_the_run_and_skips_nothing(
    llm_env: dict[str, str],
    store: PostgresRunStore,
    sample_dataset: str,
    sample_texts: dict[str, str],
    llm_server: LLMServer,
) -> None:
    down = outage(after_requests=len(sample_texts) // 3, seconds=20.0)
    llm_server.script = down

    command = run_without_training(llm_env, sample_dataset)
    returncode, stderr = finish(command)

    run = the_run(store, sample_dataset)
    assert returncode == 0, stderr[-3000:]
    assert run is not None and run.status is RunStatus.GENERATED, run
    assert run.processed_chunks == run.total_chunks == len(sample_texts)
    assert skipped_chunks(store, run.id) == 0
    # Every request beyond one per chunk failed during the outage (no chunk was answered
    # twice), and the outage cost the 5 requests that showed it, those in flight, and one
    # probe at a time after that (0.5, 1, 2, 4, 5, 5... s apart): not every chunk's tries.
    assert down.failed >= 1
    assert llm_server.total_requests - len(sample_texts) == down.failed
    assert down.failed <= 5 + IN_FLIGHT + 12
    assert run.usage.requests == llm_server.total_requests


def test_an_llm_outage_longer_than_the_wait_fails_the_phase_then_recover_completes(
    llm_env: dict[str, str],
    store: PostgresRunStore,
    sample_dataset: str,
    sample_texts: dict[str, str],
    llm_server: LLMServer,
) -> None:
    down = outage(after_requests=len(sample_texts) // 3, seconds=8.0)
    llm_server.script = down
    env = {**llm_env, "DMFLOW_LLM_OUTAGE_WAIT_S": "2"}

    command = run_without_training(env, sample_dataset)
    returncode, stderr = finish(command)

    run = the_run(store, sample_dataset)
    assert run is not None and run.status is RunStatus.GENERATING_FAILED
    assert returncode == 1
    assert "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    assert "the LLM endpoint failed every request for 2 s (503" in line
    assert f"chunks: resume with `dmflow recover {str(run.id)[:8]}`" in line
    assert skipped_chunks(store, run.id) == 0

    while down.started_at is None or time.monotonic() - down.started_at < down.seconds:
        time.sleep(0.2)
    dmflow_recover(env, run.id)

    done = store.get_run(run.id)
    assert done.status is RunStatus.GENERATED, done.error_message
    assert done.processed_chunks == len(sample_texts)
    assert skipped_chunks(store, run.id) == 0
    assert done.usage.requests == llm_server.total_requests


def test_database_connections_cut_mid_run_cost_no_chunk_twice(
    llm_env: dict[str, str],
    store: PostgresRunStore,
    db: Database,
    sample_dataset: str,
    sample_texts: dict[str, str],
    llm_server: LLMServer,
) -> None:
    # libpq names the command's connections, so that only those are cut.
    env = {**llm_env, "PGAPPNAME": "dmflow-under-test"}
    command = run_without_training(env, sample_dataset)
    cuts = 0
    try:
        while command.poll() is None and cuts < 3:
            run = the_run(store, sample_dataset)
            if run is not None and run.processed_chunks >= (cuts + 1) * len(sample_texts) // 4:
                # What a pooler restart or a failover does to the open connections.
                cut = db.execute(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity"
                    " where application_name = 'dmflow-under-test'"
                )
                cuts += 1 if cut[0][0] else 0
            time.sleep(0.05)
    finally:
        returncode, stderr = finish(command)
    assert cuts == 3
    run = the_run(store, sample_dataset)
    assert returncode == 0, stderr[-3000:]
    assert run is not None and run.status is RunStatus.GENERATED
    assert run.processed_chunks == len(sample_texts) and skipped_chunks(store, run.id) == 0
    assert [t for t in sample_texts.values() if llm_server.requests_for(t) != 1] == []
    assert run.usage.requests == llm_server.total_requests


@pytest.fixture
def own_postgres() -> Iterator[LocalPostgres]:
    """A cluster of this test's own, to kill: the session's serves the other tests. Durable
    like the embedded database: without synchronous commits a kill loses commits too."""
    root = Path(tempfile.mkdtemp(prefix="dmflow-test-killed-pg-"))
    server = LocalPostgres(root, durable=True)
    server.ensure_running()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_database_killed_mid_run_stops_the_asking_and_recover_redoes_little(
    llm_env: dict[str, str],
    own_postgres: LocalPostgres,
    sample_dataset: str,
    sample_texts: dict[str, str],
    llm_server: LLMServer,
    dmflow: CliRunner,
) -> None:
    url = own_postgres.create_database("killed")
    apply_migrations(url)
    env = {**llm_env, "DMFLOW_DATABASE_URL": url, "DMFLOW_DB_OUTAGE_WAIT_S": "5"}
    store = PostgresRunStore(url)
    command = run_without_training(env, sample_dataset)
    try:
        while True:
            assert command.poll() is None, command.communicate()
            run = the_run(store, sample_dataset)
            if run is not None and run.processed_chunks >= len(sample_texts) // 3:
                break
            time.sleep(0.02)
        store.close()
        pid = int(own_postgres.data_dir.joinpath("postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        asked_at_kill = llm_server.total_requests
        returncode, stderr = finish(command, timeout=60)
        exited_after = time.monotonic() - killed_at
        asked_after_kill = llm_server.total_requests - asked_at_kill
    finally:
        own_postgres.ensure_running()
    # Back, perhaps on another port (the old one may still be held by the killed server's
    # sockets): what a failover with a new address looks like.
    url = own_postgres.url("killed")
    env["DMFLOW_DATABASE_URL"] = url

    assert returncode == 1
    assert exited_after <= 5 + 5, (exited_after, stderr[-5000:])
    assert "Traceback" not in stderr and "Error logging to API" not in stderr
    [line] = stderr.strip().splitlines()
    assert "the database did not answer for" in line and "once the database is back" in line
    assert asked_after_kill <= IN_FLIGHT + UNRECORDED_LIMIT

    store = PostgresRunStore(url)
    try:
        run = the_run(store, sample_dataset)
        assert run is not None and run.status is RunStatus.GENERATING  # nobody could say
        # The run tells the truth all the same, and reading it writes nothing.
        ref = str(run.id)[:8]
        shown = dmflow("show", ref, env=clean_env(**env))
        assert shown.returncode == 0, shown.stderr
        assert "generating, dead" in shown.stdout and "is gone" in shown.stdout
        assert f"dmflow recover {ref}" in shown.stdout
        listed = dmflow("runs", env=clean_env(**env))
        assert f"{ref} is generating but nothing drives it any more" in listed.stdout
        assert f"dmflow recover {ref}`" in listed.stdout
        assert store.get_run(run.id) == run
        dmflow_recover(env, run.id)
        done = store.get_run(run.id)
    finally:
        store.close()
    assert done.status is RunStatus.GENERATED, done.error_message
    assert done.processed_chunks == len(sample_texts)
    answered_twice = [t for t in sample_texts.values() if llm_server.requests_for(t) > 1]
    assert len(answered_twice) <= IN_FLIGHT + UNRECORDED_LIMIT
