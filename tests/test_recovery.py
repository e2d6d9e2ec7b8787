"""Recovery from every status, refusals, concurrency, the sweep, and the CLI."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import pytest

from dmflow.chunks import DeepLakeChunkSource
from dmflow.errors import ConcurrentUpdate, RunStillActive
from dmflow.generation.local import LocalQuestionGenerator
from dmflow.models import Recovery, TrainingRun
from dmflow.settings import Settings
from dmflow.status import RunStatus
from dmflow.store.postgres import PostgresRunStore
from dmflow.sweep_report import sweep_line
from dmflow.testing.asking import ask
from flows.generation import generate_training_data
from flows.recovery import recover_failed_runs, recover_training_run
from tests.fixtures.cli import CliRunner, clean_env
from tests.fixtures.concurrency import at_once
from tests.fixtures.postgres import Database


def half_generated_then_failed(store: PostgresRunStore, dataset: str) -> TrainingRun:
    run = store.create_run(dataset, params={"generator": "local", "poll_intervals_s": [0.2]})
    chunks = next(DeepLakeChunkSource(dataset).batches(100))
    batch = asyncio.run(ask(LocalQuestionGenerator(), chunks))
    run = store.record_batch(run, batch.results, batch.usage)
    return store.transition(run, RunStatus.GENERATING_FAILED, error_message="LLM outage")


def duplicate_pairs(db: Database) -> int:
    return db.execute(
        "select count(*) from (select 1 from deep_memory_training_pairs group by"
        " training_run_id, chunk_id, question_text having count(*) > 1) d"
    )[0][0]


def test_generating_failed_resumes_generation_then_trains(
    flow_env: dict[str, str],
    store: PostgresRunStore,
    db: Database,
    sample_dataset: str,
    sample_texts: dict[str, str],
) -> None:
    failed = half_generated_then_failed(store, sample_dataset)
    result = asyncio.run(recover_training_run(failed.id))
    done = store.get_run(failed.id)
    assert result.recovered and done.status is RunStatus.COMPLETED
    assert done.attempt == 1 and done.error_message is None
    assert done.processed_chunks == len(sample_texts)
    assert duplicate_pairs(db) == 0
    assert done.flow_run_id is not None and done.flow_run_id != failed.flow_run_id


def test_training_failed_trains_again(
    flow_env: dict[str, str], store: PostgresRunStore, sample_dataset: str
) -> None:
    run = store.create_run(sample_dataset, params={"generator": "local", "poll_intervals_s": [0.2]})
    asyncio.run(generate_training_data(run.id))
    training = store.transition(store.get_run(run.id), RunStatus.TRAINING)
    failed = store.transition(training, RunStatus.TRAINING_FAILED, error_message="job failed")
    asyncio.run(recover_training_run(failed.id))
    done = store.get_run(run.id)
    assert (done.status, done.attempt) == (RunStatus.COMPLETED, 1)
    assert done.metrics is not None and done.metrics.after


def test_generated_run_is_trained(
    flow_env: dict[str, str], store: PostgresRunStore, sample_dataset: str
) -> None:
    run = store.create_run(
        sample_dataset, params={"generator": "local", "train": False, "poll_intervals_s": [0.2]}
    )
    asyncio.run(generate_training_data(run.id))
    asyncio.run(recover_training_run(run.id))
    assert store.get_run(run.id).status is RunStatus.COMPLETED


def test_completed_run_has_nothing_to_do(
    flow_env: dict[str, str], store: PostgresRunStore, db: Database
) -> None:
    run = store.create_run("ds")
    db.execute("update deep_memory_training_runs set status = 'completed' where id = %s", (run.id,))
    result = asyncio.run(recover_training_run(run.id))
    assert (result.run.id, result.run.status) == (run.id, RunStatus.COMPLETED)
    assert not result.recovered and result.message == "already completed: nothing to do"


def test_a_live_run_is_refused(flow_env: dict[str, str], store: PostgresRunStore) -> None:
    run = store.create_run("ds")  # heartbeat: now
    with pytest.raises(RunStillActive, match="alive"):
        asyncio.run(recover_training_run(run.id))
    assert store.get_run(run.id).status is RunStatus.GENERATING


def test_a_dead_run_is_reconciled_then_recovered(
    flow_env: dict[str, str], store: PostgresRunStore, db: Database, sample_dataset: str
) -> None:
    run = store.create_run(sample_dataset, params={"generator": "local", "poll_intervals_s": [0.2]})
    db.execute(
        "update deep_memory_training_runs set heartbeat_at = now() - interval '1 hour'"
        " where id = %s",
        (run.id,),
    )
    asyncio.run(recover_training_run(run.id))
    done = store.get_run(run.id)
    assert (done.status, done.attempt) == (RunStatus.COMPLETED, 1)


def test_two_recoveries_at_once_exactly_one_proceeds(
    flow_env: dict[str, str], store: PostgresRunStore, sample_dataset: str
) -> None:
    failed = half_generated_then_failed(store, sample_dataset)

    outcomes = at_once(*[lambda: asyncio.run(recover_training_run(failed.id))] * 2, timeout=300)
    # One recovery proceeds. The other is refused (it lost the compare-and-set, or found
    # the run alive) or, if it came late, finds nothing left to do: never a second run.
    proceeded = [o for o in outcomes if isinstance(o, Recovery) and o.recovered]
    others = [o for o in outcomes if o not in proceeded]
    assert len(proceeded) == 1, outcomes
    assert isinstance(others[0], ConcurrentUpdate | RunStillActive) or (
        isinstance(others[0], Recovery) and others[0].message == "already completed: nothing to do"
    ), others
    done = store.get_run(failed.id)
    assert (done.status, done.attempt) == (RunStatus.COMPLETED, 1)


@pytest.mark.parametrize("driver", ["alive", "gone"])
def test_a_run_between_generation_and_training_is_left_to_a_live_driver(
    flow_env: dict[str, str],
    store: PostgresRunStore,
    db: Database,
    sample_dataset: str,
    driver: str,
) -> None:
    # Its driver trains it next: a recovery may take it over only once that driver is gone.
    run = store.create_run(sample_dataset, params={"generator": "local", "poll_intervals_s": [0.2]})
    asyncio.run(generate_training_data(run.id))  # leased to this process, which is alive
    assert store.get_run(run.id).status is RunStatus.GENERATED
    if driver == "alive":
        with pytest.raises(RunStillActive, match="alive"):
            asyncio.run(recover_training_run(run.id))
        assert store.get_run(run.id).status is RunStatus.GENERATED
        return
    gone = subprocess.Popen(["true"])
    gone.wait()
    db.execute(
        "update deep_memory_training_runs set driver_pid = %s where id = %s", (gone.pid, run.id)
    )
    assert asyncio.run(recover_training_run(run.id)).recovered
    assert store.get_run(run.id).status is RunStatus.COMPLETED


def test_the_sweep_reconciles_recovers_and_reports(
    flow_env: dict[str, str], store: PostgresRunStore, db: Database, sample_dataset: str
) -> None:
    dead = store.create_run("dead-ds")
    db.execute(
        "update deep_memory_training_runs set heartbeat_at = now() - interval '1 hour'"
        " where id = %s",
        (dead.id,),
    )
    exhausted = store.create_run("exhausted-ds")
    db.execute(
        "update deep_memory_training_runs set status = 'training_failed', attempt = 3"
        " where id = %s",
        (exhausted.id,),
    )
    failed = half_generated_then_failed(store, sample_dataset)

    report = asyncio.run(recover_failed_runs())

    assert dead.id in report.reconciled
    assert exhausted.id in report.over_budget
    assert failed.id in report.recovered
    assert store.get_run(failed.id).status is RunStatus.COMPLETED
    assert store.get_run(exhausted.id).status is RunStatus.TRAINING_FAILED
    # the dead run's dataset does not exist: its recovery failed again, recorded by phase
    assert store.get_run(dead.id).status is RunStatus.GENERATING_FAILED
    # What it checked is on its flow run, found or not: a quiet sweep is not a broken one.
    assert report.seen == 3
    card = asyncio.run(latest_artifact("recovery-sweep"))
    assert "Checked 3 runs (the newest 200 at most)" in card
    assert "| over the attempt budget, left for a person | 1 |" in card


def test_a_sweep_that_finds_nothing_says_what_it_checked(flow_env: dict[str, str]) -> None:
    report = asyncio.run(recover_failed_runs(limit=5))
    line = sweep_line(report, 5, Settings())
    assert line.startswith("checked 0 runs (the newest 5 at most): 0 dead")
    assert "Checked 0 runs" in asyncio.run(latest_artifact("recovery-sweep"))


async def latest_artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async with get_client() as client:
        [latest] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return str(latest.data)


def test_cli_recover_and_delete(
    dmflow: CliRunner,
    flow_env: dict[str, str],
    store: PostgresRunStore,
    db: Database,
    sample_dataset: str,
) -> None:
    env = clean_env(**flow_env)
    active = store.create_run("other-ds")
    refused = dmflow("recover", str(active.id), env=env)
    assert refused.returncode == 1 and "alive" in refused.stderr

    not_deletable = dmflow("delete", str(active.id), "--yes", env=env)
    assert not_deletable.returncode == 1 and "only failed runs" in not_deletable.stderr

    failed = half_generated_then_failed(store, sample_dataset)
    kept = dmflow("delete", str(failed.id), env=env, input="n\n")
    assert kept.returncode == 1
    assert store.get_run(failed.id).status is RunStatus.GENERATING_FAILED

    recovered = dmflow("recover", str(failed.id), env=env, timeout=300)
    assert recovered.returncode == 0, recovered.stderr[-2000:]
    assert "completed" in recovered.stdout and "recall@10" in recovered.stdout

    again = store.transition(
        store.create_run("/nonexistent/ds"),
        RunStatus.GENERATING_FAILED,
        error_message="no DeepLake dataset",
    )
    deleted = dmflow("delete", str(again.id), "--yes", env=env)
    assert deleted.returncode == 0 and "deleted run" in deleted.stdout
    assert db.execute(
        "select count(*) from deep_memory_training_runs where id = %s", (again.id,)
    ) == [(0,)]
    missing = dmflow("recover", str(uuid.uuid4()), env=env)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
