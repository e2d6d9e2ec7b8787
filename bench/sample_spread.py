"""Benchmark: what a capped run trains on, the dataset's head or a spread sample.

1. Rows: on a 100,000-chunk store of 5,000 documents ingested one after another,
   the rows a run capped at 5,000 pairs (4 a chunk) asks: first and last row index
   and documents covered, walking in dataset order (`--sample in_order`) and with
   the spread sample (the default).
2. Recall: on the large sample corpus (stdlib docstrings and the language
   reference, ingested module after module), the same number of training pairs from
   the head and from the spread sample; recall@10 on held-out questions drawn from
   the whole corpus (chunks neither run trains on).

    uv run python -m bench.sample_spread
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import synthetic_dataset
from dmflow.chunks import DeepLakeChunkSource
from dmflow.generation.local import LocalQuestionGenerator
from dmflow.models import TrainingPair
from dmflow.sample import build_sample_dataset
from dmflow.sampling import plan_sample, target_chunks
from dmflow.testing.asking import ask
from dmflow.training.evaluation import is_held_out
from dmflow.training.local import LocalAdapterTrainer

QUESTIONS = 4
SEED = 7


def rows_report(root: Path, chunks: int = 100_000, max_pairs: int = 5000) -> None:
    started = time.perf_counter()
    dataset = synthetic_dataset(root / "rows", chunks)
    source = DeepLakeChunkSource(str(dataset))
    print(f"  {chunks} chunks written in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    plan = plan_sample(
        source.ids_and_documents(),
        source.total,
        seed=SEED,
        target_chunks=target_chunks(max_pairs, QUESTIONS),
    )
    assert plan is not None and plan.documents is not None
    planned = time.perf_counter() - started
    wanted = target_chunks(max_pairs, QUESTIONS)
    head = np.zeros(source.total, dtype=bool)
    head[:wanted] = True
    for label, asked in (("in_order", head), ("spread", plan.rows(0))):
        rows = np.flatnonzero(asked)
        print(
            f"  {label:>8}: {len(rows)} chunks asked, rows {rows[0]}..{rows[-1]}, "
            f"{plan.documents_covered(asked)} of {plan.document_count} documents"
        )
    print(f"  planning the sample (ids and metadata of every row) took {planned:.1f} s")


def pairs_by_chunk(dataset: Path) -> tuple[list[str], dict[str, list[TrainingPair]]]:
    chunks = [c for batch in DeepLakeChunkSource(str(dataset)).batches(1000) for c in batch]
    by_chunk: dict[str, list[TrainingPair]] = {}
    for pair in asyncio.run(ask(LocalQuestionGenerator(QUESTIONS), chunks)).pairs():
        by_chunk.setdefault(pair.chunk_id, []).append(pair)
    return [c.id for c in chunks], by_chunk


def take(order: list[str], by_chunk: dict[str, list[TrainingPair]], budget: int) -> list:  # type: ignore[type-arg]
    """The pairs of the chunks in `order` (held-out chunks left out) up to `budget`."""
    pairs: list[TrainingPair] = []
    for chunk_id in order:
        if not is_held_out(chunk_id):
            pairs += by_chunk.get(chunk_id, [])
        if len(pairs) >= budget:
            return pairs[:budget]
    return pairs


def train(dataset: Path, train_pairs: list, held: list, jobs: Path) -> dict:  # type: ignore[type-arg]
    trainer = LocalAdapterTrainer(jobs)
    job_id = trainer.submit(str(dataset), train_pairs, held)
    while trainer.status(job_id).state.is_running:
        time.sleep(0.05)
    status = trainer.status(job_id)
    assert status.error is None, status.error
    return status.metrics


def recall_report(root: Path, budgets: tuple[int, ...] = (600, 2000)) -> None:
    dataset = root / "large"
    build_sample_dataset(dataset, large=True)
    order, by_chunk = pairs_by_chunk(dataset)
    source = DeepLakeChunkSource(str(dataset))
    held = [p for chunk_id in order if is_held_out(chunk_id) for p in by_chunk.get(chunk_id, [])]
    print(
        f"  large sample corpus: {len(order)} chunks; {len(held)} held-out questions "
        "from the whole corpus"
    )
    for budget in budgets:
        plan = plan_sample(
            source.ids_and_documents(),
            source.total,
            seed=SEED,
            target_chunks=target_chunks(budget, QUESTIONS),
        )
        assert plan is not None
        spread_order = [order[row] for row in np.argsort(plan.keys, kind="stable")]
        for label, ordering in (("head", order), ("spread", spread_order)):
            metrics = train(dataset, take(ordering, by_chunk, budget), held, root / "jobs")
            before, after = metrics["before"]["recall@10"], metrics["after"]["recall@10"]
            print(
                f"  {budget} pairs, {label:>6}: recall@10 {before:.3f} -> {after:.3f} "
                f"({100 * (after - before):+.1f}), recall@1 {metrics['before']['recall@1']:.3f}"
                f" -> {metrics['after']['recall@1']:.3f}"
            )


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="dmflow-bench-spread-"))
    print("benchmark: the chunks a capped run asks, head vs spread sample")
    if "--recall-only" not in sys.argv:
        rows_report(root)
    recall_report(root)


if __name__ == "__main__":
    main()
