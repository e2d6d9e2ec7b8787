"""Benchmark a: the local generator end to end into Postgres.

Prints chunks/s, peak RSS, how much the process grew during the run, and the CPU
seconds spent in the flow's process, in Prefect's temporary server and in PostgreSQL,
for a 20,000 and a 100,000 chunk dataset, each in a fresh process (peak RSS only
grows). Targets: >= 1,500 chunks/s and growth <= 64 MiB at any size up to 1,000,000
chunks (`BENCH_A_SIZES=1000000`: about 11 min here).

    uv run python -m bench.generation_local
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = tuple(int(n) for n in os.environ.get("BENCH_A_SIZES", "20000,100000").split(","))


def make_dataset(path: Path, chunks: int) -> None:
    from bench.common import synthetic_dataset

    synthetic_dataset(path, chunks, embed_each=False)


def measure(chunks: int, dataset: Path) -> dict[str, float]:
    from bench.common import (
        bench_environment,
        cpu_seconds,
        neighbour_processes,
        peak_rss_mib,
        synthetic_dataset,
    )
    from dmflow.database import open_store
    from dmflow.settings import Settings
    from flows.generation import generate_training_data

    with bench_environment() as root:
        warmup = synthetic_dataset(root / "warmup", 64)
        store = open_store(Settings())
        # The first flow call starts Prefect's temporary server: keep it out of the figure.
        asyncio.run(generate_training_data(store.create_run(str(warmup)).id))
        rss_before = peak_rss_mib()
        run = store.create_run(str(dataset), params={"generator": "local", "max_pairs": 10**9})
        neighbours = neighbour_processes(root)
        neighbours_before = {name: cpu_seconds(pids) for name, pids in neighbours.items()}
        cpu_before = time.process_time()
        started = time.perf_counter()
        asyncio.run(generate_training_data(run.id))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        neighbours_cpu = {
            name: round(cpu_seconds(pids) - neighbours_before[name], 2)
            for name, pids in neighbours.items()
        }
        done = store.get_run(run.id)
        store.close()
        assert done.processed_chunks == chunks, done
        return {
            "chunks": chunks,
            "pairs": done.pair_count,
            "seconds": round(elapsed, 2),
            "chunks_per_s": round(chunks / elapsed, 1),
            "cpu_seconds_in_process": round(cpu, 2),
            "cpu_seconds_prefect_server": neighbours_cpu["prefect_server"],
            "cpu_seconds_postgres": neighbours_cpu["postgres"],
            "peak_rss_mib_before": round(rss_before, 1),
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }


def _in_a_process(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "bench.generation_local", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    ).stdout


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make_dataset(Path(sys.argv[2]), int(sys.argv[3]))
        return
    if len(sys.argv) == 3:
        print(json.dumps(measure(int(sys.argv[1]), Path(sys.argv[2]))))
        return
    print("benchmark a: local generator, end to end into Postgres")
    for size in SIZES:
        # Made in a process of its own: making a dataset peaks higher than the run.
        with tempfile.TemporaryDirectory(prefix="dmflow-bench-a-") as scratch:
            dataset = Path(scratch) / "dataset"
            _in_a_process("make", str(dataset), str(size))
            out = _in_a_process(str(size), str(dataset))
        figures = json.loads(out.strip().splitlines()[-1])
        growth = figures["peak_rss_mib"] - figures["peak_rss_mib_before"]
        print(
            f"  {figures['chunks']:>6} chunks: {figures['chunks_per_s']:>7.1f} chunks/s "
            f"({figures['seconds']} s, {figures['pairs']} pairs), peak RSS "
            f"{figures['peak_rss_mib']} MiB, grew {growth:.1f} MiB during the run "
            f"({1024 * 1024 * growth / figures['chunks']:.0f} bytes/chunk)"
        )
        print(
            f"{'':16}CPU: {figures['cpu_seconds_in_process']} s in the flow's process, "
            f"{figures['cpu_seconds_prefect_server']} s in Prefect's server, "
            f"{figures['cpu_seconds_postgres']} s in PostgreSQL"
        )


if __name__ == "__main__":
    main()
