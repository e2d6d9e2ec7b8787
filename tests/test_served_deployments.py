"""`dmflow serve` in its own process against a local Prefect server: every deployment
started with `prefect deployment run`, and the UI's Retry button emulated."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import AwaitingRetry

from dmflow.status import RunStatus
from dmflow.store.postgres import PostgresRunStore
from dmflow.testing.served import deployment_run as served_deployment_run
from dmflow.testing.served import dmflow_serve
from tests.fixtures.llm_server import LLMServer, unauthorized, valid_json

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def served(
    flow_env: dict[str, str], llm_server: LLMServer, tmp_path: Path
) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        **flow_env,
        "DMFLOW_LLM_BASE_URL": llm_server.url,
        "DMFLOW_LLM_API_KEY": "test-key",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    with dmflow_serve(env, tmp_path / "serve.log", ROOT):
        yield env


def deployment_run(
    env: dict[str, str], name: str, *params: str
) -> subprocess.CompletedProcess[str]:
    """What a script does: `prefect deployment run NAME --param k=v --watch`."""
    return served_deployment_run(env, name, *params, cwd=ROOT)


def copy_of(sample_dataset: str, tmp_path: Path, name: str) -> str:
    target = tmp_path / name
    shutil.copytree(sample_dataset, target)
    return str(target)


async def retry_like_the_ui(flow_run_id: UUID) -> None:
    async with get_client() as client:
        result = await client.set_flow_run_state(flow_run_id, AwaitingRetry(), force=False)
        assert result.status.value == "ACCEPT", result


async def wait_for_final_state(flow_run_id: UUID, timeout: float = 180) -> StateType:
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            state = (await client.read_flow_run(flow_run_id)).state
            assert state is not None
            if state.is_final() and state.name != "AwaitingRetry":
                return state.type
            assert time.monotonic() < deadline, f"flow run still {state.name}"
            await asyncio.sleep(1)


def test_every_deployment_runs_and_the_ui_retry_resumes_the_same_run(
    served: dict[str, str],
    store: PostgresRunStore,
    llm_server: LLMServer,
    sample_dataset: str,
    sample_texts: dict[str, str],
    tmp_path: Path,
) -> None:
    # training-run: the LLM refuses the key, so generation fails and the command says so.
    dataset = copy_of(sample_dataset, tmp_path, "docs")
    llm_server.script = unauthorized
    failed = deployment_run(served, "training-run", f"dataset={dataset}", "generator=openai")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    [run] = store.list_runs(dataset=dataset)
    assert run.status is RunStatus.GENERATING_FAILED
    assert run.flow_run_id is not None

    # The key is fixed; someone presses Retry in the UI: the same flow run runs again,
    # finds its run by flow_run_id and resumes generation.
    llm_server.script = valid_json
    asyncio.run(retry_like_the_ui(run.flow_run_id))
    assert asyncio.run(wait_for_final_state(run.flow_run_id)) is StateType.COMPLETED
    [again] = store.list_runs(dataset=dataset)
    assert again.id == run.id
    assert again.status is RunStatus.COMPLETED
    assert again.attempt == 1
    assert again.processed_chunks == len(sample_texts)
    # The name the script was told is the name the UI shows; the run's tags find it. Its
    # log said how to resume, with the progress, before the Retry.
    printed = re.search(r"Created flow run '([^']+)'", failed.stdout)
    assert printed, failed.stdout
    parent = asyncio.run(read_flow_run(run.flow_run_id))
    assert parent.name == printed[1]
    assert {f"run:{str(run.id)[:8]}", "dataset:docs"} <= set(parent.tags)
    logged = asyncio.run(log_lines(run.flow_run_id))
    assert any(
        f"run {str(run.id)[:8]} is generating_failed: 0/{len(sample_texts)} chunks" in line
        and f"resume with `dmflow recover {str(run.id)[:8]}`" in line
        for line in logged
    ), logged
    assert any(line.startswith(f"run {str(run.id)[:8]} is generated: ") for line in logged)

    # recover-training-run: a run left at `generated` is trained.
    waiting = copy_of(sample_dataset, tmp_path, "waiting")
    # What the UI's form sends for the optional fields left empty: blanks, the defaults.
    blanks = ("model=", "embedder=", "user_id=", "poll_intervals_s=[]")
    generated = deployment_run(served, "training-run", f"dataset={waiting}", "train=false", *blanks)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    [parked] = store.list_runs(dataset=waiting)
    assert parked.status is RunStatus.GENERATED
    recovered = deployment_run(served, "recover-training-run", f"run_id={parked.id}")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert store.get_run(parked.id).status is RunStatus.COMPLETED

    # delete-failed-run: a failed run goes, with its pairs.
    broken = store.create_run(copy_of(sample_dataset, tmp_path, "broken"))
    broken = store.transition(broken, RunStatus.GENERATING_FAILED, error_message="outage")
    deleted = deployment_run(served, "delete-failed-run", f"run_id={broken.id}")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert store.list_runs(dataset=broken.dataset) == []

    # recover-failed-runs: the sweep hands a failed run to the recover-training-run
    # deployment as a flow run of its own (under that deployment's limit) and returns.
    stranded = store.create_run(copy_of(sample_dataset, tmp_path, "stranded"))
    stranded = store.transition(stranded, RunStatus.GENERATING_FAILED, error_message="outage")
    swept = deployment_run(served, "recover-failed-runs")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    deadline = time.monotonic() + 180
    while store.get_run(stranded.id).status is not RunStatus.COMPLETED:
        assert time.monotonic() < deadline, store.get_run(stranded.id)
        time.sleep(1)
    done = store.get_run(stranded.id)
    assert done.attempt == 1 and done.flow_run_id is not None
    assert asyncio.run(deployment_of(done.flow_run_id)) == "recover-training-run"


async def deployment_of(flow_run_id: UUID) -> str | None:
    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        if flow_run.deployment_id is None:
            return None
        return (await client.read_deployment(flow_run.deployment_id)).name


async def read_flow_run(flow_run_id: UUID) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(flow_run_id)


async def log_lines(flow_run_id: UUID) -> list[str]:
    async with get_client() as client:
        logs = await client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
        )
    return [log.message for log in logs]
