"""`RunStore` over psycopg 3 and a connection pool.

Works against a local PostgreSQL and Supabase's direct connection or its
transaction pooler: every call is one autocommitted statement (a SQL function
does the multi-row work), with no prepared statements and no session state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from dmflow.errors import DatabaseRefused, DatabaseUnavailable, RunNotFound
from dmflow.models import ChunkResult, TrainingMetrics, TrainingPair, TrainingRun
from dmflow.redaction import describe, scrub
from dmflow.status import Phase, RunStatus, check_transition
from dmflow.store.base import batch_payload, error_from_database

_RUNS = "public.deep_memory_training_runs"

DOWN_PROBE_WINDOW_S = 120.0
"""After the database failed to answer, each call first tries one direct connection for
this long: a database that is gone fails the call at once instead of after the pool's
timeout (every hook and report after an outage would wait it out, one after another)."""


def check_reachable(conninfo: str, timeout_s: float) -> None:
    """Fail at once with the server's reason instead of the pool's silent retries."""
    try:
        psycopg.connect(conninfo, connect_timeout=max(1, int(timeout_s))).close()
    except psycopg.Error as exc:  # a malformed URL is a ProgrammingError, with the URL in it
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"could not connect to the database ({scrub(reason, conninfo)}): check "
            "DMFLOW_DATABASE_URL (host, port, user, password) and that the server is up"
        ) from None


class PostgresRunStore:
    def __init__(
        self,
        conninfo: str,
        *,
        max_size: int = 4,
        connect_timeout_s: float = 10.0,
    ) -> None:
        check_reachable(conninfo, connect_timeout_s)
        self._conninfo, self._connect_timeout_s = conninfo, connect_timeout_s
        self._down_at: float | None = None
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            timeout=connect_timeout_s,
            kwargs={
                "autocommit": True,
                "prepare_threshold": None,
                "connect_timeout": max(1, int(connect_timeout_s)),
            },
            open=False,
            name="dmflow-run-store",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout as exc:
            self._pool.close()
            raise DatabaseUnavailable(
                f"could not connect to the database within {connect_timeout_s:.0f} s: "
                "check DMFLOW_DATABASE_URL (host, port, password) and that the server is up"
            ) from exc

    # -- runs ----------------------------------------------------------------

    def create_run(
        self,
        dataset: str,
        *,
        user_id: UUID | None = None,
        params: Mapping[str, Any] | None = None,
        flow_run_id: UUID | None = None,
        lease: tuple[str, int, datetime | None] | None = None,
    ) -> TrainingRun:
        if lease is not None:
            return self._one(
                "select * from public.dmflow_create_leased_run(%s, %s, %s, %s, %s, %s, %s)",
                (dataset, user_id, Jsonb(dict(params or {})), flow_run_id, *lease),
            )
        return self._one(
            "select * from public.dmflow_create_run(%s, %s, %s, %s)",
            (dataset, user_id, Jsonb(dict(params or {})), flow_run_id),
        )

    def get_run(self, run_id: UUID) -> TrainingRun:
        rows = self._rows(f"select * from {_RUNS} where id = %s", (run_id,))
        if not rows:
            raise RunNotFound(run_id)
        return TrainingRun.model_validate(rows[0])

    def find_run_by_flow_run_id(self, flow_run_id: UUID) -> TrainingRun | None:
        rows = self._rows(f"select * from {_RUNS} where flow_run_id = %s", (flow_run_id,))
        return TrainingRun.model_validate(rows[0]) if rows else None

    def runs_in_id_range(self, low: UUID, high: UUID, *, limit: int = 10) -> list[TrainingRun]:
        rows = self._rows(
            f"select * from {_RUNS} where id between %s and %s"
            " order by created_at desc, id limit %s",
            (low, high, limit),
        )
        return [TrainingRun.model_validate(row) for row in rows]

    def list_runs(self, *, dataset: str | None = None, limit: int = 50) -> list[TrainingRun]:
        rows = self._rows(
            f"select * from {_RUNS} where %(dataset)s::text is null or dataset = %(dataset)s"
            " order by created_at desc, id limit %(limit)s",
            {"dataset": dataset, "limit": limit},
        )
        return [TrainingRun.model_validate(row) for row in rows]

    def transition(
        self,
        run: TrainingRun,
        to_status: RunStatus,
        *,
        error_message: str | None = None,
        flow_run_id: UUID | None = None,
    ) -> TrainingRun:
        bump = check_transition(run.status, to_status)
        return self._one(
            "select * from public.dmflow_transition_run(%s, %s, %s, %s, %s, %s, %s)",
            (
                run.id,
                run.status.value,
                to_status.value,
                run.attempt,
                bump,
                error_message,
                flow_run_id,
            ),
        )

    def update_progress(
        self,
        run: TrainingRun,
        *,
        total_chunks: int | None = None,
        deeplake_job_id: str | None = None,
        metrics: TrainingMetrics | None = None,
        facts_patch: Mapping[str, Any] | None = None,
    ) -> TrainingRun:
        return self._one(
            "select * from public.dmflow_update_run_progress(%s, %s, %s, %s, %s, %s)",
            (
                run.id,
                run.attempt,
                total_chunks,
                deeplake_job_id,
                Jsonb(metrics.stored()) if metrics is not None else None,
                Jsonb(dict(facts_patch)) if facts_patch is not None else None,
            ),
        )

    def enter_phase(
        self,
        run_id: UUID,
        phase: Phase,
        *,
        attempt: int | None,
        flow_run_id: UUID | None,
        lease: tuple[str, int, datetime | None],
    ) -> TrainingRun:
        return self._one(
            "select * from public.dmflow_enter_phase(%s, %s, %s, %s, %s, %s, %s)",
            (run_id, phase.value, attempt, flow_run_id, *lease),
        )

    def record_batch(
        self,
        run: TrainingRun,
        results: Sequence[ChunkResult],
        usage: Mapping[str, float] | None = None,
        *,
        max_pairs: int | None = None,
        record_key: UUID | None = None,
    ) -> TrainingRun:
        chunks, pairs = batch_payload(results)
        return self._one(
            "select * from public.dmflow_record_batch(%s, %s, %s, %s, %s, %s, %s)",
            (
                run.id,
                run.attempt,
                Jsonb(chunks),
                Jsonb(pairs),
                Jsonb(dict(usage or {})),
                max_pairs,
                record_key,
            ),
        )

    def recorded_chunk_ids(self, run_id: UUID) -> set[str]:
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute(
                "select chunk_id from public.deep_memory_training_chunks"
                " where training_run_id = %s",
                (run_id,),
            )
            return {row[0] for row in cur}

    def iter_pairs(self, run_id: UUID, page_size: int = 5000) -> Iterator[list[TrainingPair]]:
        after = UUID(int=0)
        while True:
            rows = self._rows(
                "select id, question_text, chunk_id, chunk_preview, relevance_score"
                " from public.deep_memory_training_pairs"
                " where training_run_id = %s and id > %s order by id limit %s",
                (run_id, after, page_size),
            )
            if not rows:
                return
            yield [TrainingPair.model_validate(row) for row in rows]
            after = rows[-1]["id"]

    def skipped_reasons(self, run_id: UUID) -> dict[str, int]:
        rows = self._rows(
            "select reason, count(*) as chunks from public.deep_memory_training_chunks"
            " where training_run_id = %s and outcome = 'skipped' group by reason",
            (run_id,),
        )
        return {row["reason"]: int(row["chunks"]) for row in rows}

    def delete_failed_run(self, run_id: UUID) -> TrainingRun:
        return self._one("select * from public.dmflow_delete_failed_run(%s)", (run_id,))

    def close(self) -> None:
        self._pool.close()

    # -- plumbing ------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self._down_at is not None and time.monotonic() - self._down_at < DOWN_PROBE_WINDOW_S:
            try:
                check_reachable(self._conninfo, min(self._connect_timeout_s, 2.0))
            except DatabaseUnavailable:
                self._down_at = time.monotonic()
                raise
            self._down_at = None
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            translated = self._translated(exc)
            if isinstance(translated, DatabaseUnavailable):
                self._down_at = time.monotonic()
            raise translated from None
        except PoolTimeout as exc:
            self._down_at = time.monotonic()
            raise DatabaseUnavailable(
                "no database connection became available in time: the database is down "
                "or every connection is busy"
            ) from exc

    @staticmethod
    def _translated(exc: psycopg.Error) -> Exception:
        translated = error_from_database(
            exc.sqlstate, exc.diag.message_primary or str(exc), exc.diag.message_detail
        )
        if translated is not None:
            return translated
        if isinstance(exc, psycopg.OperationalError):
            return DatabaseUnavailable(f"database connection failed: {describe(exc)}")
        # Without the CONTEXT and DETAIL in which PostgreSQL quotes the row (a chunk's
        # text), nor the chained original that carries them into tracebacks.
        return DatabaseRefused(describe(exc))

    def _rows(self, query: str, params: Any) -> list[dict[str, Any]]:
        with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query.encode(), params)
            return cur.fetchall()

    def _one(self, query: str, params: Any) -> TrainingRun:
        rows = self._rows(query, params)
        return TrainingRun.model_validate(rows[0])
