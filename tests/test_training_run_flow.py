"""The parent `training_run` flow and the commands that run it."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from dmflow.chunks import DeepLakeChunkSource
from dmflow.errors import RunBlocked
from dmflow.status import RunStatus
from dmflow.store.postgres import PostgresRunStore
from flows.training_run import training_run
from tests.fixtures.cli import CliRunner, clean_env
from tests.fixtures.datasets import MakeDataset


def test_a_whole_run_completes(
    flow_env: dict[str, str],
    store: PostgresRunStore,
    sample_dataset: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    id_scans: list[str] = []
    scan = DeepLakeChunkSource._check_ids

    def counted(source: DeepLakeChunkSource) -> None:
        id_scans.append(source.path)
        scan(source)

    monkeypatch.setattr(DeepLakeChunkSource, "_check_ids", counted)
    result = asyncio.run(training_run(sample_dataset))
    assert id_scans == [sample_dataset]  # the preflight's scan; generation trusts it
    [run] = store.list_runs()
    assert run.id == result.id
    assert run.status is RunStatus.COMPLETED
    assert run.flow_run_id is not None
    assert run.metrics is not None and run.metrics.after["recall@10"] > 0

    # In the Prefect UI: the parent named by the dataset and the run's short id, its
    # phases by the run's short id and attempt.
    names = asyncio.run(_flow_run_names(run.flow_run_id))
    short = str(run.id)[:8]
    assert names == {
        f"training-run-sample-{short}",
        f"generate-{short}-a0",
        f"train-{short}-a0",
    }
    # ...and the parent, the flow run people start and retry, carries the run's summary.
    [summary] = asyncio.run(_artifacts(f"training-run-{run.id}"))
    assert summary.flow_run_id == run.flow_run_id
    assert "completed" in str(summary.data) and "recall@10" in str(summary.data)


async def _artifacts(key: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return [a for a in found if a.data and "completed" in str(a.data)]


async def _flow_run_names(parent_id: UUID) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async with get_client() as client:
        parent = await client.read_flow_run(parent_id)
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
            )
        )
    return {parent.name, *(child.name for child in children)}


def test_deferred_training_waits_at_generated(
    flow_env: dict[str, str], store: PostgresRunStore, sample_dataset: str
) -> None:
    asyncio.run(training_run(sample_dataset, train=False, max_pairs=40))
    [run] = store.list_runs()
    assert (run.status, run.pair_count) == (RunStatus.GENERATED, 40)


@pytest.mark.parametrize("spelling", ["as-is", "trailing-slash", "dot-segment"])
def test_an_unfinished_run_blocks_a_new_one(
    flow_env: dict[str, str], store: PostgresRunStore, sample_dataset: str, spelling: str
) -> None:
    blocking = store.create_run(sample_dataset)
    # The same dataset however it is spelt: its identity is its resolved path.
    asked = {
        "as-is": sample_dataset,
        "trailing-slash": sample_dataset + "/",
        "dot-segment": str(Path(sample_dataset).parent / "." / Path(sample_dataset).name),
    }[spelling]
    with pytest.raises(RunBlocked, match=str(blocking.id)):
        asyncio.run(training_run(asked))
    assert [r.id for r in store.list_runs()] == [blocking.id]
    assert store.get_run(blocking.id).status is RunStatus.GENERATING  # untouched


@pytest.mark.parametrize("train", [False, True], ids=["no-train", "train"])
@pytest.mark.parametrize("kind", ["missing", "empty", "no-text", "no-embedding"])
def test_an_unusable_dataset_is_refused_before_a_run_exists(
    flow_env: dict[str, str],
    store: PostgresRunStore,
    tmp_path: Path,
    make_dataset: MakeDataset,
    kind: str,
    train: bool,
) -> None:
    rows = [("c1", "The cooling loop keeps the reactor pressure stable at all times")]
    make = {
        "missing": lambda: (str(tmp_path / "nowhere"), "no DeepLake dataset"),
        "empty": lambda: (make_dataset([], name="empty"), "is empty"),
        "no-text": lambda: (
            make_dataset(rows, tensors=("id", "embedding"), name="no-text"),
            "no 'text' tensor",
        ),
        "no-embedding": lambda: (
            make_dataset(rows, tensors=("id", "text"), name="no-embedding"),
            "no 'embedding' tensor",
        ),
    }
    dataset, says = make[kind]()
    with pytest.raises(Exception, match=says):
        asyncio.run(training_run(dataset, train=train))
    # No run row: it would block the dataset until deleted.
    assert store.list_runs() == []


@pytest.mark.parametrize("data_dir", ["fresh", "made-0755"])
def test_demo_runs_offline_and_prints_recall(
    dmflow: CliRunner,
    flow_env: dict[str, str],
    store: PostgresRunStore,
    tmp_path: Path,
    data_dir: str,
) -> None:
    data = tmp_path / "new" / ".dmflow"  # as on a fresh checkout: nothing there yet
    if data_dir == "made-0755":  # mkdir -m755 .dmflow, before dmflow ever ran
        data.mkdir(parents=True)
        data.chmod(0o755)
    env = clean_env(**{**flow_env, "DMFLOW_DATA_DIR": str(data)})
    result = dmflow("demo", env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "built the sample dataset" in result.stdout
    assert "recall@10" in result.stdout and "pts" in result.stdout
    [run] = store.list_runs()
    assert run.status is RunStatus.COMPLETED
    # The sample and its adapter live in the data directory: other users see none of it.
    assert stat.S_IMODE(data.stat().st_mode) == (0o700 if data_dir == "fresh" else 0o711)
    assert run.dataset == str(data / "sample")
    shared = [
        f"{path.relative_to(data)} {stat.S_IMODE(path.stat().st_mode):o}"
        for made in ("sample", "sample.deep-memory")
        for path in [data / made, *(data / made).rglob("*")]
        if stat.S_IMODE(path.stat().st_mode) & 0o077
    ]
    assert (data / "sample.deep-memory").is_dir() and shared == []


def test_run_command_exit_codes(
    dmflow: CliRunner,
    flow_env: dict[str, str],
    store: PostgresRunStore,
    sample_dataset: str,
    tmp_path: Path,
) -> None:
    env = clean_env(**flow_env)
    deferred = dmflow("run", sample_dataset, "--no-train", "--max-pairs", "20", env=env)
    assert deferred.returncode == 0, deferred.stderr[-3000:]
    assert "generated" in deferred.stdout
    # dmflow's own progress, not Prefect's log lines (they stay in the Prefect UI).
    assert "Finished in state" not in deferred.stderr

    blocked = dmflow("run", sample_dataset, env=env)
    assert blocked.returncode == 1
    assert "already has an unfinished training run" in blocked.stderr

    missing = dmflow("run", str(tmp_path / "nowhere"), "--no-train", env=env)
    assert missing.returncode == 1
    assert "no DeepLake dataset" in missing.stderr and "Traceback" not in missing.stderr
    assert store.list_runs(dataset=str(tmp_path / "nowhere")) == []  # nothing to block it

    refused = dmflow("run", str(tmp_path / "nowhere"), "--verbose", env=env)
    assert refused.returncode == 1
    assert "error: no DeepLake dataset" in refused.stderr
    assert "Finished in state Failed" in refused.stderr  # --verbose keeps Prefect's lines
    # A failure dmflow explains is one line in Prefect's log too; its traceback only at
    # debug level.
    assert "Encountered exception during execution: " in refused.stderr
    assert "Traceback" not in refused.stderr

    debug = dmflow(
        "run", str(tmp_path / "nowhere"), "--verbose", env={**env, "PREFECT_LOGGING_LEVEL": "DEBUG"}
    )
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "error: no DeepLake dataset" in debug.stderr


def test_a_scheduled_run_on_a_blocked_dataset_fails_in_one_line_naming_the_blocker(
    flow_env: dict[str, str], store: PostgresRunStore, sample_dataset: str
) -> None:
    blocking = store.create_run(sample_dataset)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    flow_runs = logging.getLogger("prefect.flow_runs")
    flow_runs.addHandler(handler)
    try:
        state = asyncio.run(training_run(sample_dataset, return_state=True))  # type: ignore[call-overload]
    finally:
        flow_runs.removeHandler(handler)
    assert state.is_failed()
    errors = [r for r in seen if r.levelno >= logging.ERROR]
    failures = [r for r in errors if str(blocking.id) in r.getMessage()]
    assert failures, [r.getMessage() for r in seen]
    assert all(r.exc_info is None and "Traceback" not in r.getMessage() for r in failures)
