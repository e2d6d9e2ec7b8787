"""Benchmark b: the OpenAI-compatible generator against a test server adding 200 ms.

Ideal throughput is concurrency x 5 chunks/s (each request takes 0.2 s).
Target: >= 90 % of ideal at concurrency 32.

    uv run python -m bench.generation_llm
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

CHUNKS = 2_000
LATENCY_S = 0.2
CONCURRENCY = 32


def main() -> None:
    from bench.common import bench_environment, synthetic_dataset

    # The test server runs in its own process, as a real endpoint would: in this one
    # it would compete with the pipeline for the GIL.
    server = subprocess.Popen(
        [sys.executable, "-m", "dmflow.testing.llm_server", str(LATENCY_S)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    os.environ.update(
        DMFLOW_LLM_BASE_URL=url,
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
        run = store.create_run(str(dataset), params={"generator": "openai", "max_pairs": 10**9})
        started = time.perf_counter()
        asyncio.run(generate_training_data(run.id))
        elapsed = time.perf_counter() - started
        done = store.get_run(run.id)
        store.close()
    server.terminate()
    ideal = CONCURRENCY / LATENCY_S
    rate = done.processed_chunks / elapsed
    print("benchmark b: openai generator, test server +200 ms per request")
    print(
        f"  {done.processed_chunks} chunks in {elapsed:.1f} s: {rate:.1f} chunks/s; ideal "
        f"{ideal:.0f} chunks/s at concurrency {CONCURRENCY}: {100 * rate / ideal:.1f} % of ideal"
        f" ({done.usage.get('requests', 0):g} requests)"
    )


if __name__ == "__main__":
    main()
