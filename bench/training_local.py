"""Benchmark: the local Deep Memory trainer, time and recall before/after.

- the sample corpus (pydoc topics, local questions): the recall gain that matters,
  on the held-out 10 % (target: recall@10 +8 points or more);
- 5,000 and 50,000 pairs (the large sample corpus, cycled): training time
  (target: 50,000 pairs in under 60 s on 2 cores).

    uv run python -m bench.training_local
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import synthetic_dataset
from dmflow.chunks import DeepLakeChunkSource
from dmflow.generation.local import LocalQuestionGenerator
from dmflow.models import TrainingPair
from dmflow.sample import build_sample_dataset
from dmflow.testing.asking import ask
from dmflow.training.evaluation import split_by_chunk
from dmflow.training.local import LocalAdapterTrainer


def pairs_of(dataset: Path, limit: int | None = None) -> list[TrainingPair]:
    chunks = [c for batch in DeepLakeChunkSource(str(dataset)).batches(1000) for c in batch]
    pairs = asyncio.run(ask(LocalQuestionGenerator(4), chunks)).pairs()
    return pairs[:limit] if limit else pairs


def train(dataset: Path, pairs: list[TrainingPair], jobs: Path) -> tuple[float, dict]:  # type: ignore[type-arg]
    trainer = LocalAdapterTrainer(jobs)
    train_pairs, held = split_by_chunk(pairs)
    started = time.perf_counter()
    job_id = trainer.submit(str(dataset), train_pairs, held)
    while trainer.status(job_id).state.is_running:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    status = trainer.status(job_id)
    assert status.error is None, status.error
    return elapsed, status.metrics


def report(label: str, elapsed: float, metrics: dict) -> None:  # type: ignore[type-arg]
    before, after = metrics["before"], metrics["after"]
    gains = ", ".join(
        f"@{k.split('@')[1]} {before[k]:.3f}->{after[k]:.3f} ({100 * (after[k] - before[k]):+.1f})"
        for k in ("recall@1", "recall@10", "recall@100")
    )
    print(
        f"  {label}: {metrics['train_pairs']} trained + {metrics['eval_pairs']} held out in "
        f"{elapsed:.1f} s (training alone {metrics['train_seconds']} s); {gains}"
    )


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="dmflow-bench-train-"))
    print("benchmark: local Deep Memory trainer (512-d hashing embeddings)")
    sample = root / "sample"
    build_sample_dataset(sample)
    elapsed, metrics = train(sample, pairs_of(sample), root / "jobs")
    report("sample corpus", elapsed, metrics)
    for size in (5_000, 50_000):
        dataset = synthetic_dataset(root / f"d{size}", size // 4 + 200)
        pairs = pairs_of(dataset, size)
        elapsed, metrics = train(dataset, pairs, root / "jobs")
        report(f"{size:>6} pairs", elapsed, metrics)


if __name__ == "__main__":
    main()
