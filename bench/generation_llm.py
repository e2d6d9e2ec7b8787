"""Benchmark b: the OpenAI-compatible generator against a test server adding 200 ms.

Ideal throughput is concurrency x 5 requests/s (each request takes 0.2 s). The
figures, at concurrency 32, 64 and 128 (`BENCH_B_CONCURRENCIES`):
  - a bare aiohttp client: what the test server can give at all (target >= 95 %);
  - a bare openai client: what the SDK dmflow uses can do on this machine;
  - dmflow: the generation subflow end to end into Postgres (target >= 90 %, >= 80 %
    at 128), and the CPU seconds its process spends per 1,000 chunks.

    uv run python -m bench.generation_llm
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

LATENCY_S = 0.2
CONCURRENCIES = tuple(
    int(n) for n in os.environ.get("BENCH_B_CONCURRENCIES", "32,64,128").split(",")
)
SECONDS_PER_CLIENT_FIGURE = 8.0
BODY = {
    "model": "bench",
    "messages": [
        {"role": "system", "content": "Write 4 questions."},
        {"role": "user", "content": "The passage explains the import system in detail."},
    ],
}


async def _closed_loop(request: Callable[[], Awaitable[object]], concurrency: int) -> float:
    """Requests per second from `concurrency` workers each sending back to back."""
    deadline = time.perf_counter() + SECONDS_PER_CLIENT_FIGURE
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await request()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def bare_aiohttp(url: str, concurrency: int) -> float:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def request() -> object:
            async with session.post(f"{url}/chat/completions", json=BODY) as response:
                return await response.read()

        return await _closed_loop(request, concurrency)


async def bare_openai(url: str, concurrency: int) -> float:
    import openai

    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=url, max_retries=0)

    async def request() -> object:
        return await client.chat.completions.create(**BODY)  # type: ignore[call-overload]

    try:
        return await _closed_loop(request, concurrency)
    finally:
        await client.close()


def dmflow_rate(url: str, concurrency: int, chunks: int) -> dict[str, float]:
    """Chunks per second through the generation subflow, in a fresh process."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.generation_llm",
            "dmflow",
            url,
            str(concurrency),
            str(chunks),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def measure_dmflow(url: str, concurrency: int, chunks: int) -> None:
    os.environ.update(
        DMFLOW_LLM_BASE_URL=url,
        DMFLOW_LLM_API_KEY="sk-bench",
        DMFLOW_LLM_CONCURRENCY=str(concurrency),
    )
    from bench.common import bench_environment, synthetic_dataset
    from dmflow import resources
    from flows.generation import generate_training_data

    with bench_environment() as root:
        dataset = synthetic_dataset(root / "dataset", chunks)
        warmup = synthetic_dataset(root / "warmup", 8)
        store = resources.store()
        asyncio.run(generate_training_data(store.create_run(str(warmup)).id))
        run = store.create_run(str(dataset), params={"generator": "openai", "max_pairs": 10**9})
        started, cpu_before = time.perf_counter(), time.process_time()
        done = asyncio.run(generate_training_data(run.id))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_before
        resources.close_all()
    figures = {
        "chunks_per_s": done.processed_chunks / elapsed,
        "requests": done.usage.requests,
        "cpu_s_per_1000_chunks": 1000 * cpu / done.processed_chunks,
    }
    print(json.dumps(figures))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "dmflow":
        measure_dmflow(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    # The test server runs in its own process, as a real endpoint would: in this one
    # it would compete with the client for the GIL.
    server = subprocess.Popen(
        [sys.executable, "-m", "dmflow.testing.llm_server", str(LATENCY_S)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    print(f"benchmark b: OpenAI-compatible endpoint, +{LATENCY_S * 1000:.0f} ms per request")
    try:
        for concurrency in CONCURRENCIES:
            ideal = concurrency / LATENCY_S
            raw = asyncio.run(bare_aiohttp(url, concurrency))
            sdk = asyncio.run(bare_openai(url, concurrency))
            figures = dmflow_rate(url, concurrency, chunks=int(12 * ideal))
            rate = figures["chunks_per_s"]
            print(f"  concurrency {concurrency} (ideal {ideal:.0f}/s):")
            print(f"    bare aiohttp client  {raw:6.1f} requests/s  {100 * raw / ideal:5.1f} %")
            print(f"    bare openai client   {sdk:6.1f} requests/s  {100 * sdk / ideal:5.1f} %")
            print(
                f"    dmflow generation    {rate:6.1f} chunks/s    {100 * rate / ideal:5.1f} %"
                f"  ({figures['requests']:g} requests, "
                f"{figures['cpu_s_per_1000_chunks']:.2f} s CPU per 1,000 chunks)"
            )
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
