"""Pick the run store and the database the settings point at."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dmflow.db.local_postgres import LocalPostgres
from dmflow.errors import ConfigurationError
from dmflow.local_services import owned_directory, reachable_by_others
from dmflow.prefect_server import EmbeddedPrefectServer
from dmflow.settings import Settings
from dmflow.store.base import RunStore


def embedded_database_dir(settings: Settings) -> Path:
    """`<data dir>/postgres`; as root, when the `postgres` user (who runs the server,
    since PostgreSQL refuses root) cannot reach it - a checkout under /root, say -
    a directory of its own under /var/lib/dmflow instead."""
    wanted = owned_directory(settings.resolved_data_dir()) / "postgres"
    if os.geteuid() != 0 or reachable_by_others(wanted):
        return wanted
    digest = hashlib.sha1(str(wanted).encode()).hexdigest()[:12]
    fallback = Path("/var/lib/dmflow") / f"postgres-{digest}"
    fallback.parent.mkdir(parents=True, exist_ok=True)
    fallback.parent.chmod(0o711)  # the postgres user passes through; nobody lists it
    return fallback


def _local_postgres(settings: Settings) -> LocalPostgres:
    return LocalPostgres(embedded_database_dir(settings), bin_dir=settings.postgres_bin_dir)


def database_url(settings: Settings) -> str:
    """DMFLOW_DATABASE_URL, or the embedded local PostgreSQL (started if needed)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return _local_postgres(settings).ensure_running()


def embedded_prefect_server(settings: Settings) -> EmbeddedPrefectServer:
    """The data directory's Prefect server, its database a SQLite file of its own under the
    data directory: never in your Supabase or production database, and not in the embedded
    PostgreSQL either, so a PostgreSQL that dies does not take Prefect's API (its logs,
    states and the UI) down with it, and a run's failure is still reported in one line."""
    return EmbeddedPrefectServer(owned_directory(settings.resolved_data_dir()) / "prefect")


def embedded_postgres(settings: Settings) -> LocalPostgres | None:
    """The embedded PostgreSQL, when dmflow uses it (not started here)."""
    return _local_postgres(settings) if uses_embedded_database(settings) else None


def uses_embedded_database(settings: Settings) -> bool:
    return settings.database_url is None and settings.supabase_url is None


def open_store(settings: Settings) -> RunStore:
    """Postgres when a URL is set; Supabase REST when its URL and key are; else embedded."""
    from dmflow.store.postgres import PostgresRunStore
    from dmflow.store.supabase import SupabaseRunStore

    if settings.database_url is None and settings.supabase_url is not None:
        if settings.supabase_key is None:
            raise ConfigurationError(
                "DMFLOW_SUPABASE_URL is set but DMFLOW_SUPABASE_KEY is not: set it to the "
                "project's service-role key (Project Settings > API)"
            )
        return SupabaseRunStore(settings.supabase_url, settings.supabase_key)
    if uses_embedded_database(settings):
        from dmflow.db.migrations import apply_migrations

        url = database_url(settings)
        apply_migrations(url)  # the embedded database is ours: keep it current
    else:
        url = database_url(settings)
    return PostgresRunStore(
        url, max_size=settings.db_pool_max_size, connect_timeout_s=settings.db_connect_timeout_s
    )
