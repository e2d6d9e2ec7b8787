"""Deep Memory offline: a query-side linear adapter trained on the dataset's own embeddings.

Deep Memory learns a transformation of query embeddings so that a question
lands nearer the chunk that answers it. Here that is a d x d matrix W, started
at the identity and trained with in-batch negatives (softmax over the batch's
own target chunks) and a pull back toward the identity. Searching applies it
as `(query @ W) @ chunk_embeddings.T`.

Jobs have the managed service's shape: an id, a state file on disk that
outlives a crash (a job whose process died reads as failed), and metrics.
Job files live in the data directory; adapters are saved next to the dataset
in `<dataset>.deep-memory/`, where a search can pick up `adapter.npy`.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dmflow.driver import process_exists
from dmflow.local_services import owned_directory, write_private
from dmflow.models import TrainingPair
from dmflow.settings import Settings
from dmflow.training.base import JobState, JobStatus, TrainingError
from dmflow.training.corpus import QuestionEmbedder, open_dataset
from dmflow.training.evaluation import recall_at_k

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class AdapterConfig:
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 2e-3
    temperature: float = 0.05
    identity_pull: float = 0.1
    seed: int = 7


def adapter_dir(dataset: str) -> Path:
    path = Path(dataset).expanduser().resolve()
    return path.with_name(path.name + ".deep-memory")


def train_adapter(
    questions: Matrix, targets: Matrix, config: AdapterConfig, progress: Any = None
) -> Matrix:
    """W minimising in-batch softmax loss of (q W) . c / T, with Adam, from the identity."""
    dim = questions.shape[1]
    rng = np.random.default_rng(config.seed)
    weights = np.eye(dim, dtype=np.float32)
    first, second = np.zeros_like(weights), np.zeros_like(weights)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    total_steps = config.epochs * max(1, -(-len(questions) // config.batch_size))
    for _ in range(config.epochs):
        order = rng.permutation(len(questions))
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            query, target = questions[batch], targets[batch]
            projected = query @ weights
            logits = projected @ target.T / config.temperature
            logits -= logits.max(axis=1, keepdims=True)
            probabilities = np.exp(logits)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
            probabilities[np.arange(len(batch)), np.arange(len(batch))] -= 1.0
            grad_projected = probabilities @ target / (config.temperature * len(batch))
            gradient = query.T @ grad_projected
            gradient += config.identity_pull * (weights - np.eye(dim, dtype=np.float32))
            step += 1
            first = (beta1 * first + (1 - beta1) * gradient).astype(np.float32)
            second = (beta2 * second + (1 - beta2) * gradient * gradient).astype(np.float32)
            update = (first / (1 - beta1**step)) / (np.sqrt(second / (1 - beta2**step)) + eps)
            weights -= (config.learning_rate * update).astype(np.float32)
            if progress is not None and step % 20 == 0:
                progress(100.0 * step / total_steps)
    return weights


class LocalAdapterTrainer:
    name = "local"

    # A job on the sample takes ~1 s: a quick first look finishes the demo sooner, and
    # a look is a file read.
    default_poll_intervals_s = (0.25, 0.25, 0.5, 1.0, 2.0)

    def __init__(
        self,
        jobs_dir: Path,
        *,
        embedder: str | None = None,
        settings: Settings | None = None,
        config: AdapterConfig | None = None,
    ) -> None:
        self.jobs = jobs_dir
        self.questions = QuestionEmbedder(embedder, settings or Settings())
        self.config = config or AdapterConfig()

    # -- the trainer protocol ---------------------------------------------------

    def preflight(self, dataset: str) -> str:
        if dataset.startswith("hub://"):
            raise TrainingError(
                f"{dataset} is an Activeloop dataset: train it with the managed trainer "
                "(trainer=managed); the local trainer needs a local path"
            )
        return self.questions.checked(open_dataset(dataset), dataset).name

    def baseline(self, dataset: str, eval_pairs: Sequence[TrainingPair]) -> dict[str, Any]:
        return self.questions.corpus(open_dataset(dataset), dataset).baseline(eval_pairs)

    def submit(
        self,
        dataset: str,
        train_pairs: Sequence[TrainingPair],
        eval_pairs: Sequence[TrainingPair],
    ) -> str:
        if not train_pairs:
            raise TrainingError("there are no training pairs: generate some first")
        job_id = f"local-{uuid.uuid4().hex[:12]}"
        owned_directory(self.jobs)
        self._write(self.jobs, job_id, state=JobState.PENDING, dataset=dataset, pid=os.getpid())
        worker = threading.Thread(
            target=self._run_job,
            args=(dataset, job_id, list(train_pairs), list(eval_pairs)),
            name=f"deep-memory-{job_id}",
            daemon=True,
        )
        worker.start()
        return job_id

    def status(self, job_id: str) -> JobStatus:
        record = self._read(job_id)
        state = JobState(record["state"])
        error = record.get("error")
        if state.is_running and not process_exists(int(record.get("pid", -1))):
            state, error = JobState.FAILED, "the process training this job died before it ended"
        return JobStatus(
            job_id=job_id,
            state=state,
            progress=record.get("progress"),
            error=error,
            metrics=record.get("metrics") or {},
        )

    def cancel(self, job_id: str) -> None:
        record = self._read(job_id)
        if JobState(record["state"]).is_running:
            self._write(
                self.jobs,
                job_id,
                **{**record, "state": JobState.FAILED, "error": "cancelled"},
            )

    # -- internals ----------------------------------------------------------------

    def _run_job(
        self, dataset: str, job_id: str, train: list[TrainingPair], held: list[TrainingPair]
    ) -> None:
        jobs = self.jobs
        base = {"dataset": dataset, "pid": os.getpid()}
        try:
            self._write(jobs, job_id, state=JobState.TRAINING, progress=0.0, **base)
            started = time.perf_counter()
            metrics = self._train(dataset, job_id, train, held, jobs, base)
            metrics["train_seconds"] = round(time.perf_counter() - started, 2)
            self._write(
                jobs, job_id, state=JobState.COMPLETED, progress=100.0, metrics=metrics, **base
            )
        except Exception as exc:  # the job's failure is its state, read by status()
            self._write(
                jobs, job_id, state=JobState.FAILED, error=f"{type(exc).__name__}: {exc}", **base
            )

    def _train(
        self,
        dataset: str,
        job_id: str,
        train: list[TrainingPair],
        held: list[TrainingPair],
        jobs: Path,
        base: dict[str, Any],
    ) -> dict[str, Any]:
        corpus = self.questions.corpus(open_dataset(dataset), dataset)
        embeddings = corpus.embeddings
        train_q, train_rows = corpus.encode(train)
        held_q, held_rows = corpus.encode(held)
        if len(train_q) == 0:
            raise TrainingError("none of the training pairs' chunks are in the dataset")

        def progress(percent: float) -> None:
            self._write(jobs, job_id, state=JobState.TRAINING, progress=round(percent, 1), **base)

        weights = train_adapter(train_q, embeddings[train_rows], self.config, progress)
        before = recall_at_k(held_q, embeddings, held_rows)
        after = recall_at_k(held_q @ weights, embeddings, held_rows)
        target = adapter_dir(dataset)
        target.mkdir(parents=True, exist_ok=True)
        np.save(target / f"adapter-{job_id}.npy", weights)
        latest = target / "adapter.npy.tmp"
        with latest.open("wb") as handle:
            np.save(handle, weights)
        latest.replace(target / "adapter.npy")
        return {
            "trainer": self.name,
            "embedder": corpus.embedder.name,
            "train_pairs": len(train_q),
            "eval_pairs": len(held_q),
            "before": before,
            "after": after,
            "adapter": str(target / "adapter.npy"),
        }

    def _read(self, job_id: str) -> dict[str, Any]:
        path = self.jobs / f"{job_id}.json"
        if not path.is_file():
            raise TrainingError(f"no local Deep Memory job {job_id} in {self.jobs}")
        return dict(json.loads(path.read_text()))

    @staticmethod
    def _write(jobs: Path, job_id: str, **record: Any) -> None:
        # Write-then-rename: a reader never sees half a state file.
        temporary = jobs / f"{job_id}.json.tmp"
        write_private(temporary, json.dumps(record, default=str))
        temporary.replace(jobs / f"{job_id}.json")
