"""Benchmark c: kill generation at about 50 % with SIGKILL, resume, count the redo.

Reports the chunks asked twice (target: at most the requests in flight plus 16, the
most a record can wait for) and the usage recorded against the requests the endpoint
received over both processes.

    uv run python -m bench.recovery_redo
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHUNKS = 2_000
BATCH = 64
IN_FLIGHT = 16


# The generation subflow in a process of its own, so it can be killed for real.
GENERATE = (
    "import asyncio, sys, uuid; from flows.generation import generate_training_data; "
    "asyncio.run(generate_training_data(uuid.UUID(sys.argv[1])))"
)


def main() -> None:
    from bench.common import bench_environment, synthetic_dataset
    from dmflow.testing.llm_server import start_llm_server

    server, httpd = start_llm_server()
    server.latency_s = 0.02
    os.environ.update(
        DMFLOW_LLM_BASE_URL=server.url,
        DMFLOW_LLM_API_KEY="sk-bench",
        DMFLOW_LLM_CONCURRENCY=str(IN_FLIGHT),
    )
    from dmflow.database import open_store
    from dmflow.settings import Settings
    from flows.generation import generate_training_data

    with bench_environment() as root:
        dataset = synthetic_dataset(root / "dataset", CHUNKS)
        store = open_store(Settings())
        run = store.create_run(
            str(dataset),
            params={"generator": "openai", "max_pairs": 10**9, "batch_size": BATCH},
        )
        worker = subprocess.Popen(
            [sys.executable, "-c", GENERATE, str(run.id)],
            cwd=Path(__file__).parent.parent,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while store.get_run(run.id).processed_chunks < CHUNKS // 2:
            if worker.poll() is not None:
                raise SystemExit("the worker ended before reaching 50 %")
            time.sleep(0.02)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        at_kill = store.get_run(run.id).processed_chunks
        requests_before_resume = server.total_requests
        asyncio.run(generate_training_data(run.id))
        done = store.get_run(run.id)
        store.close()
    httpd.shutdown()
    redone = server.total_requests - CHUNKS
    twice = sum(1 for count in server.requests_by_text.values() if count > 1)
    print("benchmark c: SIGKILL at ~50 %, then resume")
    print(
        f"  killed at {at_kill}/{CHUNKS} chunks recorded ({requests_before_resume} requests "
        f"sent); after resume {done.processed_chunks}/{CHUNKS} recorded, "
        f"{server.total_requests} requests in all"
    )
    print(
        f"  chunks asked twice: {twice} (redone requests: {redone}; target <= "
        f"{IN_FLIGHT} in flight + 16 = {IN_FLIGHT + 16}); requests per chunk: "
        f"{server.total_requests / CHUNKS:.3f}"
    )
    recorded = int(done.usage.get("requests", 0))
    print(
        f"  usage: {recorded} requests recorded, {server.total_requests} received by the "
        f"endpoint (unrecorded: {server.total_requests - recorded})"
    )


if __name__ == "__main__":
    main()
