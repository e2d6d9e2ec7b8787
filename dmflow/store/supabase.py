"""`RunStore` over Supabase's REST API (supabase-py).

Each method is one `rpc()` into the same SQL functions the Postgres adapter
calls, or one table read, so both adapters share one set of rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, TypeVar, cast
from uuid import UUID

import httpx
from pydantic import SecretStr

from dmflow.errors import ConfigurationError, DatabaseRefused, DatabaseUnavailable, RunNotFound
from dmflow.models import ChunkResult, TrainingMetrics, TrainingPair, TrainingRun
from dmflow.redaction import scrub
from dmflow.status import Phase, RunStatus, check_transition
from dmflow.store.base import batch_payload, error_from_database

_RUNS = "deep_memory_training_runs"
_PAGE = 1000  # PostgREST's default max-rows on Supabase

T = TypeVar("T")


def _uuid(value: UUID | None) -> str | None:
    return str(value) if value is not None else None


class SupabaseRunStore:
    def __init__(
        self,
        url: str,
        service_key: SecretStr,
        *,
        http_client: httpx.Client | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        from supabase.lib.client_options import SyncClientOptions

        from supabase import create_client

        self._http = http_client or httpx.Client(timeout=timeout_s)
        self._client = create_client(
            url,
            service_key.get_secret_value(),
            options=SyncClientOptions(
                httpx_client=self._http, auto_refresh_token=False, persist_session=False
            ),
        )

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
        arguments: dict[str, Any] = {
            "p_dataset": dataset,
            "p_user_id": _uuid(user_id),
            "p_params": dict(params or {}),
            "p_flow_run_id": _uuid(flow_run_id),
        }
        if lease is None:
            return self._rpc("dmflow_create_run", arguments)
        host, pid, started_at = lease
        arguments |= {
            "p_host": host,
            "p_pid": pid,
            "p_started_at": started_at.isoformat() if started_at else None,
        }
        return self._rpc("dmflow_create_leased_run", arguments)

    def get_run(self, run_id: UUID) -> TrainingRun:
        rows = self._call(
            lambda: self._client.table(_RUNS).select("*").eq("id", str(run_id)).execute().data
        )
        if not rows:
            raise RunNotFound(run_id)
        return TrainingRun.model_validate(rows[0])

    def find_run_by_flow_run_id(self, flow_run_id: UUID) -> TrainingRun | None:
        rows = self._call(
            lambda: (
                self._client.table(_RUNS)
                .select("*")
                .eq("flow_run_id", str(flow_run_id))
                .execute()
                .data
            )
        )
        return TrainingRun.model_validate(rows[0]) if rows else None

    def runs_in_id_range(self, low: UUID, high: UUID, *, limit: int = 10) -> list[TrainingRun]:
        def query() -> Any:
            request = self._client.table(_RUNS).select("*").gte("id", str(low))
            request = request.lte("id", str(high)).order("created_at", desc=True)
            return request.limit(limit).execute().data

        return [TrainingRun.model_validate(row) for row in self._call(query)]

    def list_runs(self, *, dataset: str | None = None, limit: int = 50) -> list[TrainingRun]:
        def query() -> Any:
            request = self._client.table(_RUNS).select("*")
            if dataset is not None:
                request = request.eq("dataset", dataset)
            return request.order("created_at", desc=True).limit(limit).execute().data

        return [TrainingRun.model_validate(row) for row in self._call(query)]

    def transition(
        self,
        run: TrainingRun,
        to_status: RunStatus,
        *,
        error_message: str | None = None,
        flow_run_id: UUID | None = None,
    ) -> TrainingRun:
        bump = check_transition(run.status, to_status)
        return self._rpc(
            "dmflow_transition_run",
            {
                "p_run_id": str(run.id),
                "p_from_status": run.status.value,
                "p_to_status": to_status.value,
                "p_attempt": run.attempt,
                "p_bump_attempt": bump,
                "p_error_message": error_message,
                "p_flow_run_id": _uuid(flow_run_id),
            },
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
        return self._rpc(
            "dmflow_update_run_progress",
            {
                "p_run_id": str(run.id),
                "p_attempt": run.attempt,
                "p_total_chunks": total_chunks,
                "p_deeplake_job_id": deeplake_job_id,
                "p_metrics": metrics.stored() if metrics is not None else None,
                "p_facts_patch": dict(facts_patch) if facts_patch is not None else None,
            },
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
        host, pid, started_at = lease
        return self._rpc(
            "dmflow_enter_phase",
            {
                "p_run_id": str(run_id),
                "p_phase": phase.value,
                "p_attempt": attempt,
                "p_flow_run_id": _uuid(flow_run_id),
                "p_host": host,
                "p_pid": pid,
                "p_started_at": started_at.isoformat() if started_at else None,
            },
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
        return self._rpc(
            "dmflow_record_batch",
            {
                "p_run_id": str(run.id),
                "p_attempt": run.attempt,
                "p_chunks": chunks,
                "p_pairs": pairs,
                "p_usage": dict(usage or {}),
                "p_max_pairs": max_pairs,
                "p_record_key": _uuid(record_key),
            },
        )

    def recorded_chunk_ids(self, run_id: UUID) -> set[str]:
        rows = self._ledger_rows(run_id, "chunk_id")
        return {str(row["chunk_id"]) for row in rows}

    def iter_pairs(self, run_id: UUID, page_size: int = _PAGE) -> Iterator[list[TrainingPair]]:
        def page(after: str) -> list[dict[str, Any]]:
            response = (
                self._client.table("deep_memory_training_pairs")
                .select("id,question_text,chunk_id,chunk_preview,relevance_score")
                .eq("training_run_id", str(run_id))
                .gt("id", after)
                .order("id")
                .limit(min(page_size, _PAGE))
                .execute()
            )
            return cast(list[dict[str, Any]], response.data)

        after = str(UUID(int=0))
        while rows := self._call(partial(page, after)):
            yield [TrainingPair.model_validate(row) for row in rows]
            after = str(rows[-1]["id"])

    def skipped_reasons(self, run_id: UUID) -> dict[str, int]:
        rows = self._ledger_rows(run_id, "reason", ("outcome", "skipped"))
        return dict(Counter(str(row["reason"]) for row in rows))

    def _ledger_rows(
        self, run_id: UUID, columns: str, *filters: tuple[str, str]
    ) -> list[dict[str, Any]]:
        """Every matching ledger row, page by page (PostgREST caps a response's rows)."""

        def page(start: int) -> list[dict[str, Any]]:
            request = (
                self._client.table("deep_memory_training_chunks")
                .select(columns)
                .eq("training_run_id", str(run_id))
            )
            for column, value in filters:
                request = request.eq(column, value)
            response = request.order("chunk_id").range(start, start + _PAGE - 1).execute()
            return cast(list[dict[str, Any]], response.data)

        rows: list[dict[str, Any]] = []
        start = 0
        while True:
            fetched = self._call(partial(page, start))
            rows.extend(fetched)
            if len(fetched) < _PAGE:
                return rows
            start += _PAGE

    def delete_failed_run(self, run_id: UUID) -> TrainingRun:
        return self._rpc("dmflow_delete_failed_run", {"p_run_id": str(run_id)})

    def close(self) -> None:
        self._http.close()

    # -- plumbing ------------------------------------------------------------

    def _rpc(self, function: str, params: dict[str, Any]) -> TrainingRun:
        data = self._call(lambda: self._client.rpc(function, params).execute().data)
        return TrainingRun.model_validate(data[0] if isinstance(data, list) else data)

    def _call(self, request: Callable[[], T]) -> T:
        from postgrest.exceptions import APIError

        try:
            return request()
        except APIError as exc:
            details = exc.details if isinstance(exc.details, str) else None
            translated = error_from_database(exc.code, exc.message or str(exc), details)
            if translated is not None:
                raise translated from None
            if exc.code == "42501":
                raise ConfigurationError(
                    "Supabase refused the request (permission denied): DMFLOW_SUPABASE_KEY must "
                    "be the project's service-role key, not the anon key"
                ) from None
            # Never postgrest's own error: its message and details are the server's words,
            # which a misconfigured URL may fill with the key it was sent.
            raise DatabaseRefused(
                f"Supabase refused the request ({exc.code or 'no code'}): "
                f"{scrub(' '.join(str(exc.message or '').split()))[:300]}"
            ) from None
        except httpx.TransportError as exc:
            raise DatabaseUnavailable(
                f"Supabase did not answer ({type(exc).__name__}): check DMFLOW_SUPABASE_URL "
                "and the network"
            ) from None
