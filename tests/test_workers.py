"""Beyond one machine: the deployments of `deployments/prefect.yaml` on a `process` work
pool, run by two `prefect worker` processes; one worker dies with its flow runs (a lost
machine, as kill -9 of everything it ran) and the sweep, on the other, recovers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from dmflow.status import RunStatus
from dmflow.store.postgres import PostgresRunStore
from tests.fixtures.llm_server import LLMServer
from tests.fixtures.postgres import Database
from tests.test_recovery import duplicate_pairs
from tests.test_served_deployments import copy_of

ROOT = Path(__file__).resolve().parent.parent
POOL = "dmflow"  # the work pool named in deployments/prefect.yaml
DEPLOYMENTS = ["training-run", "recover-training-run", "recover-failed-runs", "delete-failed-run"]


def prefect(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


async def _delete_deployments() -> None:
    async with get_client() as client:
        for name in DEPLOYMENTS:
            try:
                deployment = await client.read_deployment_by_name(f"{name}/{name}")
            except Exception:
                continue
            await client.delete_deployment(deployment.id)


@pytest.fixture
def workers(
    flow_env: dict[str, str], llm_server: LLMServer, tmp_path: Path
) -> Iterator[tuple[dict[str, str], list[subprocess.Popen[bytes]]]]:
    llm_server.latency_s = 0.1
    env = {
        **os.environ,
        **flow_env,
        "DMFLOW_PROJECT_DIR": str(ROOT),
        "DMFLOW_LLM_BASE_URL": llm_server.url,
        "DMFLOW_LLM_API_KEY": "test-key",
        "DMFLOW_LLM_CONCURRENCY": "4",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    prefect(env, "work-pool", "create", POOL, "--type", "process", "--overwrite")
    prefect(env, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
    started = []
    try:
        for name in ("worker-a", "worker-b"):
            log = (tmp_path / f"{name}.log").open("wb")
            started.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "prefect",
                        "worker",
                        "start",
                        "--pool",
                        POOL,
                        "--name",
                        name,
                        "--limit",
                        "2",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        yield env, started
    finally:
        for worker in started:
            for pid in descendants(worker.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            worker.wait(30)
        asyncio.run(_delete_deployments())


def test_two_workers_three_datasets_one_worker_lost_and_the_sweep_recovers(
    workers: tuple[dict[str, str], list[subprocess.Popen[bytes]]],
    store: PostgresRunStore,
    db: Database,
    sample_dataset: str,
    sample_texts: dict[str, str],
    tmp_path: Path,
) -> None:
    env, [worker_a, worker_b] = workers
    datasets = [copy_of(sample_dataset, tmp_path, f"docs-{n}") for n in range(3)]
    for dataset in datasets:
        prefect(
            env,
            "deployment",
            "run",
            "training-run/training-run",
            "--param",
            f"dataset={dataset}",
            "--param",
            "generator=openai",
            "--param",
            "batch_size=16",
        )

    # Once all three runs have started and one is well into generation, lose the worker
    # that drives it, with all it ran.
    def victim() -> tuple[subprocess.Popen[bytes], UUID] | None:
        runs = [store.list_runs(dataset=dataset) for dataset in datasets]
        if not all(runs):
            return None
        for [run] in runs:
            if run.status is RunStatus.GENERATING and run.processed_chunks >= 48:
                for worker in (worker_a, worker_b):
                    if run.driver_pid in descendants(worker.pid):
                        return worker, run.id
        return None

    deadline = time.monotonic() + 240
    while (found := victim()) is None:
        assert time.monotonic() < deadline, "no run reached mid-generation"
        assert worker_a.poll() is None and worker_b.poll() is None, "a worker ended"
        time.sleep(0.1)
    lost, lost_run_id = found
    lost_pids = descendants(lost.pid)
    for pid in lost_pids:
        os.kill(pid, signal.SIGKILL)
    lost.wait(30)
    killed = store.get_run(lost_run_id)
    assert killed.status is RunStatus.GENERATING  # nothing ran after the kill

    # The scheduled sweep, started now rather than at the next quarter hour.
    prefect(env, "deployment", "run", "recover-failed-runs/recover-failed-runs")

    deadline = time.monotonic() + 300
    while True:
        runs = [store.list_runs(dataset=dataset)[0] for dataset in datasets]
        if all(run.status is RunStatus.COMPLETED for run in runs):
            break
        assert time.monotonic() < deadline, [(r.status.value, r.error_message) for r in runs]
        time.sleep(1)

    assert duplicate_pairs(db) == 0
    for run in runs:
        assert len(store.list_runs(dataset=run.dataset)) == 1
        assert run.processed_chunks == run.total_chunks == len(sample_texts)
        rows, distinct = db.execute(
            "select count(*), count(distinct chunk_id) from deep_memory_training_chunks"
            " where training_run_id = %s",
            (run.id,),
        )[0]
        assert rows == distinct == len(sample_texts)
    recovered = store.get_run(killed.id)
    assert recovered.attempt == 1
    assert recovered.driver_pid not in lost_pids  # finished by the other worker's process
