"""Apply `supabase/migrations/*.sql` and record them the way the Supabase CLI does.

Versions go to `supabase_migrations.schema_migrations` (version, name,
statements), so `supabase db push` and `dmflow migrate` agree on what is
applied. Each file runs in one transaction together with its history row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

_FILE_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>[A-Za-z0-9_]+)\.sql$")

_HISTORY_DDL = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
    version text not null primary key
);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text;
"""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def default_migrations_dir() -> Path:
    """The copy packed into an installed wheel, or the repository's `supabase/migrations`."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "_migrations", package_dir.parent / "supabase" / "migrations"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"no migrations next to {package_dir}: dmflow is installed without its SQL; "
        "reinstall it from a wheel built by `pip wheel` or `uv build`"
    )


def discover(directory: Path | None = None) -> list[Migration]:
    directory = directory or default_migrations_dir()
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(
                f"migration {path.name} is not named <14-digit timestamp>_<name>.sql "
                "(Supabase's convention): rename it"
            )
        found.append(Migration(match["version"], match["name"], path))
    return found


def applied_versions(conn: psycopg.Connection) -> set[str]:
    exists = conn.execute(
        "select to_regclass('supabase_migrations.schema_migrations') is not null"
    ).fetchone()
    if not exists or not exists[0]:
        return set()
    return {
        row[0] for row in conn.execute("select version from supabase_migrations.schema_migrations")
    }


def pending(conninfo: str, directory: Path | None = None) -> list[Migration]:
    with psycopg.connect(conninfo, prepare_threshold=None) as conn:
        done = applied_versions(conn)
    return [m for m in discover(directory) if m.version not in done]


def apply_migrations(
    conninfo: str, *, up_to: str | None = None, directory: Path | None = None
) -> list[Migration]:
    """Apply every pending migration (up to and including `up_to`); return those applied."""
    applied: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True, prepare_threshold=None) as conn:
        with conn.transaction():
            # `create schema if not exists` is not safe against a concurrent twin.
            conn.execute("select pg_advisory_xact_lock(hashtext('dmflow.migrate'))")
            conn.execute(_HISTORY_DDL.encode())
        for migration in discover(directory):
            if up_to is not None and migration.version > up_to:
                break
            with conn.transaction():
                # Serialises concurrent `migrate` calls; the loser sees the row and skips.
                conn.execute(
                    "lock table supabase_migrations.schema_migrations in share row exclusive mode"
                )
                already = conn.execute(
                    "select 1 from supabase_migrations.schema_migrations where version = %s",
                    (migration.version,),
                ).fetchone()
                if already:
                    continue
                sql = migration.sql
                conn.execute(sql.encode())
                conn.execute(
                    "insert into supabase_migrations.schema_migrations (version, name, statements)"
                    " values (%s, %s, %s)",
                    (migration.version, migration.name, [sql]),
                )
            applied.append(migration)
    return applied
