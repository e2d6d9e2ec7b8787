"""A capped run asks a sample spread over the whole dataset (and its documents), the
same one every time, and says what it covered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from dmflow.chunks import DeepLakeChunkSource
from dmflow.coverage import coverage_line
from dmflow.models import ChunkResult, TrainingRun
from dmflow.phases.generation import generate
from dmflow.phases.steps import DirectSteps
from dmflow.sampling import plan_sample
from dmflow.settings import Settings
from dmflow.status import Phase, RunStatus
from dmflow.store.postgres import PostgresRunStore
from tests.fixtures.postgres import Database


def rows(n: int, documents: int | None = None) -> list[tuple[str, str | None]]:
    return [(f"c-{i}", None if documents is None else f"doc-{i % documents}") for i in range(n)]


def test_the_sample_is_spread_over_every_part_of_the_dataset() -> None:
    plan = plan_sample(rows(10_000), 10_000, seed=7, target_chunks=200)
    assert plan is not None
    asked = np.flatnonzero(plan.rows(0))
    assert len(asked) == 200
    per_tenth = np.bincount(asked // 1000, minlength=10)
    assert per_tenth.min() >= 8, per_tenth  # 20 expected in each tenth, not 200 in the first


def test_the_same_seed_gives_the_same_sample_and_another_seed_another() -> None:
    def sample(seed: int) -> list[int]:
        plan = plan_sample(rows(5000), 5000, seed=seed, target_chunks=100)
        assert plan is not None
        return np.flatnonzero(plan.rows(0)).tolist()

    assert sample(7) == sample(7)
    assert len(set(sample(7)) & set(sample(8))) < 20


def test_every_document_gets_a_chunk_before_any_gets_a_second() -> None:
    # One document of 5,000 chunks ingested first, then 49 of 10 chunks: a uniform
    # sample of 60 would take about 55 from the big one.
    listed = [(f"big-{i}", "big") for i in range(5000)]
    listed += [(f"small-{d}-{i}", f"small-{d}") for d in range(49) for i in range(10)]
    plan = plan_sample(listed, len(listed), seed=7, target_chunks=60)
    assert plan is not None and plan.document_count == 50
    first = plan.rows(0)
    assert plan.documents_covered(first) == 50
    assert first[:5000].sum() <= 11


def test_passes_ask_further_slices_until_every_candidate() -> None:
    plan = plan_sample(rows(1000), 1000, seed=1, target_chunks=100)
    assert plan is not None
    slices = [plan.rows(n) for n in range(plan.passes)]
    assert [int(s.sum()) for s in slices[:3]] == [100, 25, 35]
    assert not np.any(np.sum(slices, axis=0) > 1)  # no chunk in two passes
    assert np.all(np.sum(slices, axis=0) == 1)  # the last pass reaches every chunk


def test_chunks_asked_earlier_are_not_candidates_and_an_uncapped_run_needs_no_sample() -> None:
    earlier = {f"c-{i}" for i in range(0, 1000, 2)}
    plan = plan_sample(rows(1000), 1000, seed=7, target_chunks=100, exclude=earlier)
    assert plan is not None and plan.candidates == 500
    assert not any(f"c-{i}" in earlier for i in np.flatnonzero(plan.rows(0)))
    assert plan_sample(rows(1000), 1000, seed=7, target_chunks=500, exclude=earlier) is None


@pytest.fixture
def settings(db: Database, tmp_path: Path) -> Settings:
    return Settings(database_url=SecretStr(db.url), data_dir=tmp_path / "data")


def generated(
    store: PostgresRunStore, settings: Settings, dataset: str, **params: Any
) -> TrainingRun:
    run = store.create_run(dataset, params={"batch_size": 8, "questions_per_chunk": 1, **params})
    run = store.enter_phase(
        run.id, Phase.GENERATION, attempt=0, flow_run_id=None, lease=("h", 1, None)
    )
    return asyncio.run(generate(run, store, settings, DirectSteps()))


def asked_rows(store: PostgresRunStore, run: TrainingRun) -> list[int]:
    source = DeepLakeChunkSource(run.dataset)
    return np.flatnonzero(source.rows_of(store.recorded_chunk_ids(run.id))).tolist()


def test_a_capped_run_asks_a_spread_sample_and_in_order_asks_the_head(
    store: PostgresRunStore, settings: Settings, sample_dataset: str, db: Database
) -> None:
    total = DeepLakeChunkSource(sample_dataset).total
    spread = generated(store, settings, sample_dataset, max_pairs=40, sample="spread")
    assert spread.status is RunStatus.GENERATED and spread.pair_count == 40
    asked = asked_rows(store, spread)
    assert len(asked) == 40
    assert asked[0] < total * 0.1 and asked[-1] > total * 0.9, asked
    coverage = spread.facts.coverage
    assert coverage is not None and "coverage" not in spread.params
    assert coverage["sample"] == "spread" and coverage["asked"] == 40
    assert coverage["documents_covered"] == 40 < coverage["documents"]
    assert "40 of 314 chunks asked, a sample spread" in (coverage_line(spread) or "")

    db.execute("delete from public.deep_memory_training_runs")
    head = generated(store, settings, sample_dataset, max_pairs=40, sample="in_order")
    assert asked_rows(store, head) == list(range(40))
    assert "first rows" in (coverage_line(head) or "")


def test_a_resumed_capped_run_asks_exactly_the_first_attempts_sample(
    store: PostgresRunStore, settings: Settings, sample_dataset: str, db: Database
) -> None:
    first = generated(store, settings, sample_dataset, max_pairs=30)
    sample = set(store.recorded_chunk_ids(first.id))
    db.execute("delete from public.deep_memory_training_runs")

    # The first attempt recorded 7 chunks of its sample, then its process was killed.
    run = store.create_run(sample_dataset, params=dict(first.params))
    store.record_batch(run, [ChunkResult.done(c, ["Why?"], "text") for c in sorted(sample)[:7]])
    run = store.enter_phase(
        run.id, Phase.GENERATION, attempt=0, flow_run_id=None, lease=("h", 1, None)
    )
    resumed = asyncio.run(generate(run, store, settings, DirectSteps()))
    assert store.recorded_chunk_ids(resumed.id) == sample


def test_include_previous_runs_asks_only_chunks_no_completed_run_asked(
    store: PostgresRunStore, settings: Settings, sample_dataset: str
) -> None:
    first = generated(store, settings, sample_dataset, max_pairs=40)
    store.transition(store.transition(first, RunStatus.TRAINING), RunStatus.COMPLETED)
    second = generated(store, settings, sample_dataset, max_pairs=40, include_previous_runs=True)
    again = store.recorded_chunk_ids(first.id) & store.recorded_chunk_ids(second.id)
    assert second.pair_count == 40 and not again
    assert second.facts.coverage is not None
    assert second.facts.coverage["asked_earlier"] == 40
