"""Benchmark c: what a fault costs, for three faults of a 2,000-chunk generation.

- kill -9 of the driver at ~50 %, then resume;
- kill -9 of the database (its postmaster) at ~50 %: the driver must stop by itself
  within the database wait; the database comes back and the run resumes;
- a 20 s outage of the LLM endpoint (every request answered 503) at ~1/3, in one run.

For each: chunks asked twice (target: at most the requests in flight plus 16), chunks
skipped for transport reasons (target: 0), and the usage recorded against the requests
the endpoint received.

    uv run python -m bench.recovery_redo
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

CHUNKS = 2_000
BATCH = 64
IN_FLIGHT = 16
DB_WAIT_S = 5
OUTAGE_S = 20.0

# The generation subflow in a process of its own, so it can be killed for real.
GENERATE = (
    "import asyncio, sys, uuid; from flows.generation import generate_training_data; "
    "asyncio.run(generate_training_data(uuid.UUID(sys.argv[1])))"
)


@dataclass
class Figures:
    fault: str
    asked_twice: int
    skipped_for_transport: int
    requests: int
    recorded_requests: int
    note: str = ""


def _start_worker(run_id: UUID) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", GENERATE, str(run_id)],
        cwd=Path(__file__).parent.parent,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _new_run(store: object, dataset: Path) -> UUID:
    run = store.create_run(  # type: ignore[attr-defined]
        str(dataset),
        params={"generator": "openai", "max_pairs": 10**9, "batch_size": BATCH, "train": False},
    )
    return UUID(str(run.id))


def _wait_for(store: object, run_id: UUID, chunks: int, worker: subprocess.Popen[bytes]) -> None:
    while store.get_run(run_id).processed_chunks < chunks:  # type: ignore[attr-defined]
        if worker.poll() is not None:
            raise SystemExit("the worker ended before the fault")
        time.sleep(0.02)


def _figures(fault: str, store: object, run_id: UUID, server: object, note: str) -> Figures:
    done = store.get_run(run_id)  # type: ignore[attr-defined]
    assert done.processed_chunks == CHUNKS, done
    transport = sum(
        count
        for reason, count in store.skipped_reasons(run_id).items()  # type: ignore[attr-defined]
        if "request failed" in reason or "no answer" in reason
    )
    counts = server.requests_by_text.values()  # type: ignore[attr-defined]
    return Figures(
        fault,
        asked_twice=sum(1 for count in counts if count > 1),
        skipped_for_transport=transport,
        requests=server.total_requests,  # type: ignore[attr-defined]
        recorded_requests=int(done.usage.get("requests", 0)),
        note=note,
    )


def driver_killed(root: Path, server: object) -> Figures:
    from bench.common import synthetic_dataset
    from dmflow.database import open_store
    from dmflow.settings import Settings
    from flows.generation import generate_training_data

    store = open_store(Settings())
    run_id = _new_run(store, synthetic_dataset(root / "driver", CHUNKS))
    worker = _start_worker(run_id)
    _wait_for(store, run_id, CHUNKS // 2, worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    asyncio.run(generate_training_data(run_id))
    figures = _figures("kill -9 of the driver", store, run_id, server, "")
    store.close()
    return figures


def database_killed(root: Path, server: object) -> Figures:
    from bench.common import synthetic_dataset
    from dmflow.database import open_store
    from dmflow.db.local_postgres import LocalPostgres
    from dmflow.settings import Settings
    from flows.generation import generate_training_data

    postgres = LocalPostgres(root / "postgres", durable=True)
    store = open_store(Settings())
    run_id = _new_run(store, synthetic_dataset(root / "database", CHUNKS))
    worker = _start_worker(run_id)
    _wait_for(store, run_id, CHUNKS // 2, worker)
    store.close()
    pid = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    worker.wait(timeout=120)
    stopped_after = time.monotonic() - killed_at
    os.environ["DMFLOW_DATABASE_URL"] = postgres.ensure_running()
    store = open_store(Settings())
    asyncio.run(generate_training_data(run_id))
    note = f"the driver stopped {stopped_after:.1f} s after the kill (wait {DB_WAIT_S} s)"
    figures = _figures("kill -9 of the database", store, run_id, server, note)
    store.close()
    return figures


def llm_outage(root: Path, server: object) -> Figures:
    from bench.common import synthetic_dataset
    from dmflow.database import open_store
    from dmflow.settings import Settings
    from dmflow.testing.llm_server import outage
    from flows.generation import generate_training_data

    down = outage(after_requests=CHUNKS // 3, seconds=OUTAGE_S)
    server.script = down  # type: ignore[attr-defined]
    store = open_store(Settings())
    run_id = _new_run(store, synthetic_dataset(root / "outage", CHUNKS))
    started = time.monotonic()
    asyncio.run(generate_training_data(run_id))
    took = time.monotonic() - started
    status = store.get_run(run_id).status.value
    note = (
        f"{status} in {took:.0f} s; {down.failed} requests failed during the outage (those "
        "that showed it, those in flight, the probes): each chunk was answered once"
    )
    figures = _figures(f"a {OUTAGE_S:.0f} s LLM outage", store, run_id, server, note)
    store.close()
    return figures


def main() -> None:
    from bench.common import bench_environment
    from dmflow.testing.llm_server import start_llm_server, valid_json

    server, httpd = start_llm_server()
    server.latency_s = 0.02
    os.environ.update(
        DMFLOW_LLM_BASE_URL=server.url,
        DMFLOW_LLM_API_KEY="sk-bench",
        DMFLOW_LLM_CONCURRENCY=str(IN_FLIGHT),
        DMFLOW_DB_OUTAGE_WAIT_S=str(DB_WAIT_S),
    )
    results = []
    with bench_environment(durable=True) as root:
        for scenario in (driver_killed, database_killed, llm_outage):
            server.reset()
            server.script = valid_json
            results.append(scenario(root, server))
    httpd.shutdown()
    print(f"benchmark c: faults during a {CHUNKS}-chunk generation, {IN_FLIGHT} in flight")
    for f in results:
        print(f"  {f.fault}:")
        print(
            f"    chunks asked twice: {f.asked_twice} (target <= {IN_FLIGHT} in flight + 16 = "
            f"{IN_FLIGHT + 16}); skipped for transport: {f.skipped_for_transport} (target 0)"
        )
        print(
            f"    requests: {f.requests} received by the endpoint, {f.recorded_requests} "
            f"recorded (unrecorded: {f.requests - f.recorded_requests})"
        )
        if f.note:
            print(f"    {f.note}")


if __name__ == "__main__":
    main()
