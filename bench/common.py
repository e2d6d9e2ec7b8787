"""Shared set-up for the benchmarks: a throwaway PostgreSQL, datasets, Prefect."""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Prefect reads its settings once, at import: set them before anything imports it.
_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="dmflow-bench-prefect-"))
os.environ.setdefault("PREFECT_HOME", str(_PREFECT_HOME))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import numpy as np  # noqa: E402

from dmflow.db.local_postgres import LocalPostgres  # noqa: E402
from dmflow.db.migrations import apply_migrations  # noqa: E402
from dmflow.deeplake_support import import_deeplake  # noqa: E402
from dmflow.embedding import HashingEmbedder  # noqa: E402
from dmflow.sample import sample_chunks  # noqa: E402


@contextmanager
def bench_environment(durable: bool = False) -> Iterator[Path]:
    """A temp dir with a migrated PostgreSQL, DMFLOW_DATABASE_URL pointing at it
    (`durable`: commits survive a kill -9 of the server, as in production)."""
    root = Path(tempfile.mkdtemp(prefix="dmflow-bench-"))
    root.chmod(0o777)
    server = LocalPostgres(root / "postgres", durable=durable)
    url = server.ensure_running()
    apply_migrations(url)
    os.environ["DMFLOW_DATABASE_URL"] = url
    try:
        yield root
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


def synthetic_dataset(path: Path, chunks: int, *, embed_each: bool = True) -> Path:
    """`chunks` real documentation chunks (the large sample corpus, cycled with new ids).
    `embed_each=False` embeds each corpus text once, without its "[part n]" prefix: for
    benchmarks that never read the embeddings, where embedding every row of a
    1,000,000-chunk dataset took longer than the run itself."""
    deeplake = import_deeplake()
    from deeplake.constants import DEFAULT_VECTORSTORE_TENSORS

    corpus = [c.text for c in sample_chunks(large=True)]
    embedder = HashingEmbedder()
    shared = None if embed_each else np.asarray(embedder.embed(corpus), np.float32)
    dataset = deeplake.empty(str(path), overwrite=True, verbose=False)
    with dataset:
        for spec in DEFAULT_VECTORSTORE_TENSORS:
            dataset.create_tensor(**dict(spec))
        # Per tensor and 10,000 rows at a time: `dataset.extend` of all four tensors
        # together took ~16 min for a 1,000,000-chunk dataset; this takes ~41 s.
        for start in range(0, chunks, 10_000):
            stop = min(chunks, start + 10_000)
            texts = [f"[part {n}] {corpus[n % len(corpus)]}" for n in range(start, stop)]
            embeddings = (
                np.asarray(embedder.embed(texts), np.float32)
                if shared is None
                else shared[[n % len(corpus) for n in range(start, stop)]]
            )
            dataset.id.extend([f"chunk-{n:06d}" for n in range(start, stop)])
            dataset.text.extend(texts)
            # documents of 20 chunks, ingested one after another
            dataset.metadata.extend([{"doc_id": f"doc-{n // 20}"} for n in range(start, stop)])
            dataset.embedding.extend(embeddings)
    return path


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) "


def _descendants(root_pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    found = {root_pid}
    while grown := {pid for pid, parent in parents.items() if parent in found} - found:
        found |= grown
    return found


def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU seconds so far of these processes (Linux)."""
    ticks = 0
    for pid in pids:
        if (fields := _stat(pid)) is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def neighbour_processes(root: Path) -> dict[str, set[int]]:
    """The processes that work with a benchmark's run: Prefect's temporary server (a child
    of this process) and the PostgreSQL server of `bench_environment(root)`."""
    children = _descendants(os.getpid()) - {os.getpid()}
    postmaster = next(root.rglob("postmaster.pid"), None)
    postgres = (
        _descendants(int(postmaster.read_text().split()[0])) if postmaster is not None else set()
    )
    return {"prefect_server": children - postgres, "postgres": postgres}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
