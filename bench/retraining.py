"""Benchmark: what a scheduled retraining pays for, and what a resumed capped run asks.

1. Two runs with `include_previous_runs` on the sample corpus, the store growing by
   10 % between them: the LLM requests each sends (the OpenAI-compatible test
   server counts them) and the pairs each trains on.
2. A capped run (spread sample) whose generation is stopped midway by an error of
   the endpoint, then resumed: are the chunks it ends with exactly those an
   uninterrupted run with the same parameters asks?

    uv run python -m bench.retraining
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import bench_environment

LEASE = ("bench", os.getpid(), None)


def main() -> None:
    with bench_environment() as root:
        _grown_store(root)
        _resumed_sample(root)


def _engine(root: Path, url: str) -> tuple[Any, Any]:
    from pydantic import SecretStr

    from dmflow.database import open_store
    from dmflow.settings import Settings

    settings = Settings(
        data_dir=root / "data",
        llm_base_url=url,
        llm_api_key=SecretStr("sk-bench"),
        llm_max_attempts=2,
        recovery_attempt_budget=3,
    )
    return settings, open_store(settings)


def _run_once(store: Any, settings: Any, dataset: Path, **params: Any) -> Any:
    from dmflow.phases.generation import generate
    from dmflow.phases.steps import DirectSteps
    from dmflow.phases.training import train
    from dmflow.status import Phase

    run = store.create_run(str(dataset), params={"generator": "openai", **params})
    run = store.enter_phase(run.id, Phase.GENERATION, attempt=0, flow_run_id=None, lease=LEASE)
    run = asyncio.run(generate(run, store, settings, DirectSteps()))
    run = store.enter_phase(run.id, Phase.TRAINING, attempt=0, flow_run_id=None, lease=LEASE)
    return asyncio.run(train(run, store, settings, DirectSteps()))


def _grown_store(root: Path) -> None:
    from dmflow.deeplake_support import import_deeplake
    from dmflow.embedding import HashingEmbedder
    from dmflow.sample import build_sample_dataset, sample_chunks
    from dmflow.testing.llm_server import start_llm_server

    server, httpd = start_llm_server()
    settings, store = _engine(root, server.url)
    dataset = root / "growing"
    first_size = build_sample_dataset(dataset)
    print(f"scheduled retraining (include_previous_runs) on a store of {first_size} chunks")
    first = _run_once(store, settings, dataset, include_previous_runs=True)
    print(
        f"  run 1: {server.total_requests} requests, {first.pair_count} new pairs, "
        f"{first.metrics['train_pairs']} trained"
    )
    extra = [c for c in sample_chunks(large=True) if c.id.startswith("doc-")][: first_size // 10]
    deeplake = import_deeplake()
    with deeplake.load(str(dataset), verbose=False) as stored:
        stored.extend(
            {
                "id": [c.id for c in extra],
                "text": [c.text for c in extra],
                "metadata": [c.metadata for c in extra],
                "embedding": np.asarray(HashingEmbedder().embed([c.text for c in extra])),
            }
        )
    server.reset()
    second = _run_once(store, settings, dataset, include_previous_runs=True)
    print(
        f"  run 2, after {len(extra)} chunks were added: {server.total_requests} requests, "
        f"{second.pair_count} new pairs, {second.metrics['train_pairs']} trained "
        f"(coverage: {second.params['coverage']})"
    )
    httpd.shutdown()


def _resumed_sample(root: Path) -> None:
    from dmflow.generation.base import GenerationFailed
    from dmflow.phases.generation import generate
    from dmflow.phases.steps import DirectSteps
    from dmflow.sample import build_sample_dataset
    from dmflow.status import Phase, RunStatus
    from dmflow.testing.llm_server import Reply, start_llm_server, unauthorized, valid_json

    server, httpd = start_llm_server()
    settings, store = _engine(root, server.url)
    dataset = root / "large"
    total = build_sample_dataset(dataset, large=True)
    params = {"generator": "openai", "max_pairs": 1200, "batch_size": 16}
    print(f"a capped run (1,200 pairs of {total} chunks), stopped midway and resumed")

    run = store.create_run(str(dataset), params=params)
    run = store.enter_phase(run.id, Phase.GENERATION, attempt=0, flow_run_id=None, lease=LEASE)
    asyncio.run(generate(run, store, settings, DirectSteps()))
    uninterrupted = store.recorded_chunk_ids(run.id)
    training = store.transition(store.get_run(run.id), RunStatus.TRAINING)
    store.transition(training, RunStatus.COMPLETED)

    answered = iter(range(10**9))

    def refuse_after_120(text: str, attempt: int) -> Reply:
        return valid_json(text, attempt) if next(answered) < 120 else unauthorized(text, attempt)

    server.script = refuse_after_120
    run = store.create_run(str(dataset), params=params)
    run = store.enter_phase(run.id, Phase.GENERATION, attempt=0, flow_run_id=None, lease=LEASE)
    with contextlib.suppress(GenerationFailed):
        asyncio.run(generate(run, store, settings, DirectSteps()))
    stopped = store.get_run(run.id)
    server.script = valid_json
    run = store.transition(stopped, RunStatus.GENERATING_FAILED, error_message="bench stop")
    run = store.transition(run, RunStatus.GENERATING)
    run = store.enter_phase(
        run.id, Phase.GENERATION, attempt=run.attempt, flow_run_id=None, lease=LEASE
    )
    asyncio.run(generate(run, store, settings, DirectSteps()))
    resumed = store.recorded_chunk_ids(run.id)
    print(
        f"  stopped at {stopped.processed_chunks} chunks; resumed run asked {len(resumed)}; "
        f"uninterrupted run asked {len(uninterrupted)}; same chunks: {resumed == uninterrupted}"
        f" (differ by {len(resumed ^ uninterrupted)})"
    )
    httpd.shutdown()


if __name__ == "__main__":
    main()
