"""Deep Memory training with the local trainer: recall, jobs on disk, the training subflow."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest

from dmflow.chunks import DeepLakeChunkSource
from dmflow.generation.local import LocalQuestionGenerator
from dmflow.models import TrainingPair
from dmflow.status import RunStatus
from dmflow.store.postgres import PostgresRunStore
from dmflow.testing.asking import ask
from dmflow.training.base import JobState, TrainingError
from dmflow.training.evaluation import is_held_out, recall_at_k, split_by_chunk
from dmflow.training.local import LocalAdapterTrainer, adapter_dir
from flows.generation import generate_training_data
from flows.training import train_deep_memory
from tests.fixtures.datasets import MakeDataset
from tests.fixtures.postgres import Database


@pytest.fixture(scope="module")
def sample_pairs(sample_dataset: str) -> list[TrainingPair]:
    chunks = [c for batch in DeepLakeChunkSource(sample_dataset).batches(500) for c in batch]
    return asyncio.run(ask(LocalQuestionGenerator(4), chunks)).pairs()


def wait_for(trainer: LocalAdapterTrainer, job_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while trainer.status(job_id).state.is_running:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.1)


def test_split_is_by_chunk_and_deterministic(sample_pairs: list[TrainingPair]) -> None:
    train, held = split_by_chunk(sample_pairs)
    assert {p.chunk_id for p in train}.isdisjoint({p.chunk_id for p in held})
    assert 0.05 < len(held) / len(sample_pairs) < 0.15
    assert split_by_chunk(list(reversed(sample_pairs))) == (train, held)  # a stable order
    assert all(is_held_out(p.chunk_id) for p in held)


def test_the_same_pairs_in_any_order_give_the_same_adapter_and_recall(
    sample_dataset: str, sample_pairs: list[TrainingPair], tmp_path: Path
) -> None:
    trainer = LocalAdapterTrainer(tmp_path / "jobs")
    shuffled = random.Random(1).sample(sample_pairs, len(sample_pairs))
    metrics = []
    for pairs in (sample_pairs, shuffled):
        job_id = trainer.submit(sample_dataset, *split_by_chunk(pairs))
        wait_for(trainer, job_id)
        metrics.append(trainer.status(job_id).metrics)
    assert metrics[0]["after"] == metrics[1]["after"]
    assert metrics[0]["before"] == metrics[1]["before"]


def test_recall_at_k_counts_ranks() -> None:
    import numpy as np

    corpus = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0.5, 0, 0], [0.9, 1, 0, 0]], dtype=np.float32)
    recall = recall_at_k(queries, corpus, np.array([0, 0]), ks=(1, 2))
    assert recall == {"recall@1": 0.5, "recall@2": 1.0}


def test_local_trainer_raises_recall_on_held_out_questions(
    sample_dataset: str, sample_pairs: list[TrainingPair], tmp_path: Path
) -> None:
    trainer = LocalAdapterTrainer(tmp_path / "jobs")
    trainer.preflight(sample_dataset)
    train, held = split_by_chunk(sample_pairs)
    job_id = trainer.submit(sample_dataset, train, held)
    wait_for(trainer, job_id)
    status = trainer.status(job_id)
    assert status.state is JobState.COMPLETED, status.error
    before, after = status.metrics["before"], status.metrics["after"]
    assert after["recall@10"] >= before["recall@10"] + 0.05
    assert after["recall@1"] > before["recall@1"]
    assert status.metrics["eval_pairs"] == len(held)
    assert (adapter_dir(sample_dataset) / "adapter.npy").is_file()
    record = json.loads((tmp_path / "jobs" / f"{job_id}.json").read_text())
    assert record["state"] == "completed"


def test_a_job_whose_process_died_reads_as_failed(tmp_path: Path) -> None:
    trainer = LocalAdapterTrainer(tmp_path)
    (tmp_path / "local-dead.json").write_text(
        json.dumps({"state": "training", "dataset": "x", "pid": 2**22 + 12345})
    )
    status = trainer.status("local-dead")
    assert status.state is JobState.FAILED and "died" in (status.error or "")
    with pytest.raises(TrainingError, match="no local Deep Memory job"):
        trainer.status("local-missing")


def test_preflight_refuses_what_cannot_work(make_dataset: MakeDataset, tmp_path: Path) -> None:
    trainer = LocalAdapterTrainer(tmp_path)
    with pytest.raises(TrainingError, match="managed"):
        trainer.preflight("hub://org/docs")
    eight_dimensional = make_dataset([("a", "alpha"), ("b", "beta")])
    with pytest.raises(TrainingError, match="512-d vectors but the dataset's embeddings are 8-d"):
        trainer.preflight(eight_dimensional)
    with pytest.raises(TrainingError, match="no DeepLake dataset"):
        trainer.preflight(str(tmp_path / "missing"))


def generated_run(store: PostgresRunStore, dataset: str, **params: object) -> object:
    run = store.create_run(dataset, params={"generator": "local", **params})
    asyncio.run(generate_training_data(run.id))
    return run


def test_training_subflow_completes_the_run(
    flow_env: dict[str, str], store: PostgresRunStore, db: Database, sample_dataset: str
) -> None:
    run = generated_run(store, sample_dataset, poll_intervals_s=[0.2])
    result = asyncio.run(train_deep_memory(run.id))  # type: ignore[attr-defined]
    done = store.get_run(run.id)  # type: ignore[attr-defined]
    assert done.status is RunStatus.COMPLETED
    assert done.deeplake_job_id is not None and done.deeplake_job_id.startswith("local-")
    assert done.metrics is not None
    assert done.metrics.after["recall@10"] > done.metrics.before["recall@10"]
    assert result.metrics.job_id == done.deeplake_job_id
    assert db.execute("select last_training_run_id from deep_memory_settings") == [(done.id,)]


def test_a_running_job_is_reattached_not_resubmitted(
    flow_env: dict[str, str],
    store: PostgresRunStore,
    sample_dataset: str,
    sample_pairs: list[TrainingPair],
) -> None:
    run = generated_run(store, sample_dataset, poll_intervals_s=[0.2])
    trainer = LocalAdapterTrainer(Path(flow_env["DMFLOW_DATA_DIR"]) / "deep-memory-jobs")
    train, held = split_by_chunk(sample_pairs)
    job_id = trainer.submit(sample_dataset, train, held)  # as if an earlier attempt had
    training = store.transition(store.get_run(run.id), RunStatus.TRAINING)  # type: ignore[attr-defined]
    store.update_progress(training, deeplake_job_id=job_id)

    asyncio.run(train_deep_memory(run.id))  # type: ignore[attr-defined]

    done = store.get_run(run.id)  # type: ignore[attr-defined]
    assert (done.status, done.deeplake_job_id) == (RunStatus.COMPLETED, job_id)
    assert [
        p.stem for p in (Path(flow_env["DMFLOW_DATA_DIR"]) / "deep-memory-jobs").glob("*.json")
    ] == [job_id]


def test_a_failed_job_is_submitted_anew(
    flow_env: dict[str, str], store: PostgresRunStore, sample_dataset: str
) -> None:
    run = generated_run(store, sample_dataset, poll_intervals_s=[0.2])
    jobs = Path(flow_env["DMFLOW_DATA_DIR"]) / "deep-memory-jobs"
    jobs.mkdir()
    (jobs / "local-failed.json").write_text(
        json.dumps({"state": "failed", "dataset": sample_dataset, "error": "boom", "pid": 1})
    )
    training = store.transition(store.get_run(run.id), RunStatus.TRAINING)  # type: ignore[attr-defined]
    store.update_progress(training, deeplake_job_id="local-failed")

    asyncio.run(train_deep_memory(run.id))  # type: ignore[attr-defined]

    done = store.get_run(run.id)  # type: ignore[attr-defined]
    assert done.status is RunStatus.COMPLETED
    assert done.deeplake_job_id not in (None, "local-failed")


def test_a_training_failure_marks_the_run_training_failed(
    flow_env: dict[str, str], store: PostgresRunStore, sample_dataset: str
) -> None:
    run = generated_run(store, sample_dataset, trainer="managed")
    with pytest.raises(TrainingError, match="managed"):
        asyncio.run(train_deep_memory(run.id))  # type: ignore[attr-defined]
    failed = store.get_run(run.id)  # type: ignore[attr-defined]
    assert failed.status is RunStatus.TRAINING_FAILED
    assert failed.error_message is not None and "TrainingError" in failed.error_message


def test_incremental_retraining_adds_the_pairs_of_earlier_completed_runs(
    flow_env: dict[str, str], store: PostgresRunStore, db: Database, sample_dataset: str
) -> None:
    earlier = generated_run(store, sample_dataset, poll_intervals_s=[0.2], max_pairs=200)
    asyncio.run(train_deep_memory(earlier.id))  # type: ignore[attr-defined]
    # Earlier runs asked other questions (another generator, another day).
    db.execute(
        "update deep_memory_training_pairs set question_text = question_text || ' (earlier)'"
        " where training_run_id = %s",
        (earlier.id,),  # type: ignore[attr-defined]
    )
    alone = generated_run(store, sample_dataset, poll_intervals_s=[0.2], max_pairs=300)
    asyncio.run(train_deep_memory(alone.id))  # type: ignore[attr-defined]
    both = generated_run(
        store, sample_dataset, poll_intervals_s=[0.2], max_pairs=300, include_previous_runs=True
    )
    asyncio.run(train_deep_memory(both.id))  # type: ignore[attr-defined]

    def trained_on(run: object) -> int:
        metrics = store.get_run(run.id).metrics  # type: ignore[attr-defined]
        assert metrics is not None
        return int((metrics.train_pairs or 0) + (metrics.eval_pairs or 0))

    assert trained_on(alone) == 300
    # It asked only chunks no completed run had asked, and trains on its own 300 pairs,
    # the earlier run's 200 and the other completed run's 300, each pair once.
    earlier_id, alone_id, both_id = (r.id for r in (earlier, alone, both))  # type: ignore[attr-defined]
    asked_before = store.recorded_chunk_ids(earlier_id) | store.recorded_chunk_ids(alone_id)
    assert not store.recorded_chunk_ids(both_id) & asked_before
    assert trained_on(both) == 300 + 200 + 300
