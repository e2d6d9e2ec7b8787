"""Benchmark b: the OpenAI-compatible generator against a test server adding 200 ms.

Ideal throughput is concurrency x 5 chunks/s (each request takes 0.2 s).
Target: >= 90 % of ideal at concurrency 32.

    uv run python -m bench.generation_llm
"""

from __future__ import annotations

import asyncio
import os
import time

CHUNKS = 2_000
LATENCY_S = 0.2
CONCURRENCY = 32


def main() -> None:
    from bench.common import bench_environment, synthetic_dataset
    from tests.fixtures.llm_server import start_llm_server

    server, httpd = start_llm_server()
    os.environ.update(
        DMFLOW_LLM_BASE_URL=server.url,
        DMFLOW_LLM_API_KEY="sk-bench",
        DMFLOW_LLM_CONCURRENCY=str(CONCURRENCY),
    )
    from dmflow.database import open_store
    from dmflow.settings import Settings
    from flows.generation import generate_training_data

    with bench_environment() as root:
        dataset = synthetic_dataset(root / "dataset", CHUNKS)
        warmup = synthetic_dataset(root / "warmup", 8)
        store = open_store(Settings())
        asyncio.run(generate_training_data(store.create_run(str(warmup)).id))
        server.reset()
        server.latency_s = LATENCY_S
        run = store.create_run(str(dataset), params={"generator": "openai", "max_pairs": 10**9})
        started = time.perf_counter()
        asyncio.run(generate_training_data(run.id))
        elapsed = time.perf_counter() - started
        done = store.get_run(run.id)
        store.close()
    httpd.shutdown()
    ideal = CONCURRENCY / LATENCY_S
    rate = done.processed_chunks / elapsed
    print("benchmark b: openai generator, test server +200 ms per request")
    print(
        f"  {done.processed_chunks} chunks in {elapsed:.1f} s: {rate:.1f} chunks/s; ideal "
        f"{ideal:.0f} chunks/s at concurrency {CONCURRENCY}: {100 * rate / ideal:.1f} % of ideal"
        f" ({server.total_requests} requests)"
    )


if __name__ == "__main__":
    main()
