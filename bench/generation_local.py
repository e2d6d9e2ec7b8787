"""Benchmark a: the local generator end to end into Postgres.

Prints chunks/s, peak RSS and how much the process grew during the run for a 20,000
and a 100,000 chunk dataset, each in a fresh process (peak RSS only grows).
Targets: >= 1,000 chunks/s; growth independent of the dataset's size.

    uv run python -m bench.generation_local
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SIZES = tuple(int(n) for n in os.environ.get("BENCH_A_SIZES", "20000,100000").split(","))


def measure(chunks: int) -> dict[str, float]:
    from bench.common import bench_environment, peak_rss_mib, synthetic_dataset
    from dmflow.database import open_store
    from dmflow.settings import Settings
    from flows.generation import generate_training_data

    with bench_environment() as root:
        dataset = synthetic_dataset(root / "dataset", chunks)
        warmup = synthetic_dataset(root / "warmup", 64)
        store = open_store(Settings())
        # The first flow call starts Prefect's temporary server: keep it out of the figure.
        asyncio.run(generate_training_data(store.create_run(str(warmup)).id))
        rss_before = peak_rss_mib()
        run = store.create_run(str(dataset), params={"generator": "local", "max_pairs": 10**9})
        cpu_before = time.process_time()
        started = time.perf_counter()
        asyncio.run(generate_training_data(run.id))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        done = store.get_run(run.id)
        store.close()
        assert done.processed_chunks == chunks, done
        return {
            "chunks": chunks,
            "pairs": done.pair_count,
            "seconds": round(elapsed, 2),
            "chunks_per_s": round(chunks / elapsed, 1),
            "cpu_seconds_in_process": round(cpu, 2),
            "peak_rss_mib_before": round(rss_before, 1),
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }


def main() -> None:
    if len(sys.argv) == 2:
        print(json.dumps(measure(int(sys.argv[1]))))
        return
    print("benchmark a: local generator, end to end into Postgres")
    for size in SIZES:
        out = subprocess.run(
            [sys.executable, "-m", "bench.generation_local", str(size)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent.parent,
        )
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        growth = figures["peak_rss_mib"] - figures["peak_rss_mib_before"]
        print(
            f"  {figures['chunks']:>6} chunks: {figures['chunks_per_s']:>7.1f} chunks/s "
            f"({figures['seconds']} s, {figures['pairs']} pairs), peak RSS "
            f"{figures['peak_rss_mib']} MiB, grew {growth:.1f} MiB during the run "
            f"({1024 * 1024 * growth / figures['chunks']:.0f} bytes/chunk), "
            f"{figures['cpu_seconds_in_process']} s CPU in the flow's process"
        )


if __name__ == "__main__":
    main()
