"""The `RunStore` protocol and what both adapters share: payloads and error mapping."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID, uuid4

from dmflow.errors import (
    ConcurrentUpdate,
    DatabaseRefused,
    DmflowError,
    InvalidBatch,
    RunBlocked,
    RunNotDeletable,
    RunNotFound,
)
from dmflow.models import ChunkResult, TrainingMetrics, TrainingPair, TrainingRun
from dmflow.status import Phase, RunStatus


class RunStore(Protocol):
    """Runs, pairs and the chunk ledger. Every status change goes through `transition`."""

    def create_run(
        self,
        dataset: str,
        *,
        user_id: UUID | None = None,
        params: Mapping[str, Any] | None = None,
        flow_run_id: UUID | None = None,
        lease: tuple[str, int, datetime | None] | None = None,
    ) -> TrainingRun:
        """Start a run at `generating`; `RunBlocked` if the dataset has an unfinished run.

        The same `flow_run_id` asking again gets its existing run back. With a `lease`
        (host, pid, start time), the new run is leased to that process in the same
        transaction: no moment exists where it is generating and claimed by nobody.
        """
        ...

    def get_run(self, run_id: UUID) -> TrainingRun: ...

    def find_run_by_flow_run_id(self, flow_run_id: UUID) -> TrainingRun | None: ...

    def list_runs(self, *, dataset: str | None = None, limit: int = 50) -> list[TrainingRun]:
        """Newest first."""
        ...

    def runs_in_id_range(self, low: UUID, high: UUID, *, limit: int = 10) -> list[TrainingRun]:
        """Runs whose id lies between `low` and `high` (a typed prefix), newest first."""
        ...

    def transition(
        self,
        run: TrainingRun,
        to_status: RunStatus,
        *,
        error_message: str | None = None,
        flow_run_id: UUID | None = None,
    ) -> TrainingRun:
        """Compare-and-set from the status and attempt `run` was read with.

        `InvalidTransition` if the lifecycle forbids it, `ConcurrentUpdate` if
        the run changed since it was read.
        """
        ...

    def update_progress(
        self,
        run: TrainingRun,
        *,
        total_chunks: int | None = None,
        deeplake_job_id: str | None = None,
        metrics: TrainingMetrics | None = None,
        facts_patch: Mapping[str, Any] | None = None,
    ) -> TrainingRun:
        """Refresh the heartbeat of an active run and set the given fields
        (`facts_patch` is merged into `facts`)."""
        ...

    def enter_phase(
        self,
        run_id: UUID,
        phase: Phase,
        *,
        attempt: int | None,
        flow_run_id: UUID | None,
        lease: tuple[str, int, datetime | None],
    ) -> TrainingRun:
        """May the flow run `flow_run_id`, given `attempt` (None: any), work on the run's
        `phase`? Decided once, atomically: `ConcurrentUpdate` when a newer attempt or
        another flow run drives it; the run unchanged when the phase is already behind
        it; else the run in the phase's active status (a `generated` run moves to
        `training`), leased to `lease` (host, pid, process start) with a fresh heartbeat.
        """
        ...

    def record_batch(
        self,
        run: TrainingRun,
        results: Sequence[ChunkResult],
        usage: Mapping[str, float] | None = None,
        *,
        max_pairs: int | None = None,
        record_key: UUID | None = None,
    ) -> TrainingRun:
        """Write a batch's ledger rows, pairs, counters, usage and heartbeat atomically.

        Chunks already in the ledger are ignored, so a replayed batch adds nothing.
        With `max_pairs` the run never exceeds that many pairs: results past the cap
        stay unrecorded and the last one that fits may keep only some of its questions.
        Usage is added once per `record_key` (a record may bring usage and no chunk);
        without a key, only with new chunks.
        """
        ...

    def recorded_chunk_ids(self, run_id: UUID) -> set[str]: ...

    def iter_pairs(self, run_id: UUID, page_size: int = 5000) -> Iterator[list[TrainingPair]]:
        """The run's pairs, a page at a time (keyset pagination: stable while rows change)."""
        ...

    def skipped_reasons(self, run_id: UUID) -> dict[str, int]:
        """How many chunks of the run were skipped, by reason."""
        ...

    def delete_failed_run(self, run_id: UUID) -> TrainingRun:
        """Delete a failed run with its pairs and ledger; `RunNotDeletable` otherwise."""
        ...

    def close(self) -> None: ...


def batch_payload(
    results: Sequence[ChunkResult],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The JSON arrays `dmflow_record_batch` takes: ledger rows and pairs."""
    chunks = [result.ledger_row() for result in results]
    pairs = [
        {
            "question_text": question,
            "chunk_id": result.chunk_id,
            "chunk_preview": result.chunk_preview,
            "relevance_score": 1.0,
        }
        for result in results
        for question in result.questions
    ]
    return chunks, pairs


def error_from_database(code: str | None, message: str, detail: str | None) -> DmflowError | None:
    """Translate the SQLSTATEs raised by dmflow's SQL functions; None for anything else."""
    if code is None or not code.startswith("DM"):
        return None
    facts: dict[str, Any] = {}
    if detail:
        try:
            facts = json.loads(detail)
        except ValueError:
            facts = {}
    run_id = facts.get("run_id", "?")
    if code == "DMB01":
        return RunBlocked(facts.get("dataset", "?"), run_id, facts.get("status", "?"))
    if code == "DMN01":
        return RunNotFound(run_id)
    if code == "DMC01":
        return ConcurrentUpdate(run_id, facts.get("status"), facts.get("attempt"))
    if code == "DMD01":
        return RunNotDeletable(run_id, facts.get("status", "?"))
    if code == "DMV01":
        return InvalidBatch(f"{message}; nothing of the batch was written")
    return None


def earlier_completed_runs(store: RunStore, run: TrainingRun) -> list[TrainingRun]:
    """The completed runs of `run`'s dataset other than `run` (newest first)."""
    return [
        earlier
        for earlier in store.list_runs(dataset=run.dataset, limit=1000)
        if earlier.status is RunStatus.COMPLETED and earlier.id != run.id
    ]


def record_or_skip_unstorable(
    store: RunStore,
    run: TrainingRun,
    results: Sequence[ChunkResult],
    usage: Mapping[str, float],
    max_pairs: int | None,
    record_key: UUID | None = None,
) -> TrainingRun:
    """Record a batch; when the database refuses it, record its chunks one by one, each
    chunk it still refuses as skipped with the reason, so one unstorable chunk never
    fails a run (nor every recovery of it)."""
    try:
        return store.record_batch(run, results, usage, max_pairs=max_pairs, record_key=record_key)
    except DatabaseRefused:
        if len(results) <= 1 and not usage:
            raise
    # Alone, the usage needs a key to count (the failed attempt rolled back, so a given
    # key is still unused).
    latest = store.record_batch(
        run, [], usage, max_pairs=max_pairs, record_key=record_key or uuid4()
    )
    for result in results:
        try:
            latest = store.record_batch(run, [result], {}, max_pairs=max_pairs)
        except DatabaseRefused as refused:
            reason = f"could not be stored: {str(refused).split(':')[0]}"
            latest = store.record_batch(
                run, [ChunkResult.skipped(result.chunk_id, reason)], {}, max_pairs=max_pairs
            )
    return latest
