"""`dmflow`: the command line people and scripts use.

Exit codes: 0 success, 1 a dmflow error (the message says what to do), 2 bad usage.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from dmflow.database import database_url, open_store, uses_embedded_database
from dmflow.db.migrations import apply_migrations, discover, pending
from dmflow.errors import ConfigurationError, DmflowError
from dmflow.models import TrainingRun
from dmflow.settings import Settings
from dmflow.store.base import RunStore

app = typer.Typer(
    name="dmflow",
    help="Turn a DeepLake vector store into Deep Memory training data and a trained model.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the rows as JSON, schema column names.")
]


@contextmanager
def _store() -> Iterator[RunStore]:
    store = open_store(Settings())
    try:
        yield store
    finally:
        store.close()


def _dump(runs: list[TrainingRun] | TrainingRun) -> str:
    if isinstance(runs, TrainingRun):
        return json.dumps(runs.model_dump(mode="json"), indent=2)
    return json.dumps([run.model_dump(mode="json") for run in runs], indent=2)


def _progress(run: TrainingRun) -> str:
    return (
        f"{run.processed_chunks}/{run.total_chunks}"
        if run.total_chunks
        else str(run.processed_chunks)
    )


@app.command()
def migrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List pending migrations only.")
    ] = False,
) -> None:
    """Apply pending migrations from supabase/migrations (recorded like `supabase db push`)."""
    settings = Settings()
    if settings.database_url is None and settings.supabase_url is not None:
        raise ConfigurationError(
            "migrations need a direct database connection: set DMFLOW_DATABASE_URL to the "
            "project's connection string (Project Settings > Database), or run `supabase db push`"
        )
    url = database_url(settings)
    if dry_run:
        todo = pending(url)
        for migration in todo:
            out.print(f"pending  {migration.version}_{migration.name}")
        out.print(f"{len(todo)} pending")
        return
    applied = apply_migrations(url)
    for migration in applied:
        out.print(f"applied  {migration.version}_{migration.name}")
    out.print(f"database is up to date ({len(discover())} migrations, {len(applied)} applied now)")


@app.command()
def runs(
    dataset: Annotated[str | None, typer.Option(help="Only runs of this dataset.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """List training runs, newest first."""
    with _store() as store:
        found = store.list_runs(dataset=dataset, limit=limit)
    if as_json:
        print(_dump(found))
        return
    if not found:
        out.print("no training runs yet")
        return
    table = Table()
    table.add_column("id", no_wrap=True, min_width=36)
    table.add_column("dataset", overflow="fold")
    table.add_column("status", no_wrap=True)
    for column in ("chunks", "pairs", "attempt", "updated"):
        table.add_column(column, justify="right" if column != "updated" else "left")
    for run in found:
        table.add_row(
            str(run.id),
            run.dataset,
            run.status.value,
            _progress(run),
            str(run.pair_count),
            str(run.attempt),
            run.updated_at.strftime("%Y-%m-%d %H:%M:%S") if run.updated_at else "",
        )
    out.print(table)


@app.command()
def show(run_id: UUID, as_json: JsonOption = False) -> None:
    """Show one training run."""
    with _store() as store:
        run = store.get_run(run_id)
    if as_json:
        print(_dump(run))
        return
    table = Table(show_header=False, box=None)
    for column, value in run.model_dump(mode="json").items():
        shown = (
            json.dumps(value)
            if isinstance(value, dict | list)
            else ("" if value is None else str(value))
        )
        table.add_row(f"[bold]{column}[/bold]", shown)
    out.print(table)


@app.command()
def sample(
    path: Annotated[Path, typer.Argument(help="Directory to write the DeepLake dataset to.")],
    large: Annotated[
        bool, typer.Option("--large", help="Also the standard library's docstrings.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what is there.")] = False,
) -> None:
    """Build a local sample DeepLake dataset from Python's own documentation (offline)."""
    from dmflow.sample import build_sample_dataset

    written = build_sample_dataset(path, large=large, overwrite=overwrite)
    out.print(f"wrote {written} chunks to {path.expanduser().resolve()}")


@app.command()
def demo() -> None:
    """Build the sample dataset and run a whole training run offline."""
    settings = Settings()
    if uses_embedded_database(settings):
        err.print(
            f"using the embedded PostgreSQL under {settings.resolved_data_dir() / 'postgres'}"
        )
    with _store():
        pass  # the database is up and migrated: the part of the demo that exists today
    err.print(
        "dmflow demo: the training pipeline is not built yet, so there is no run to show.\n"
        "What exists: the database (`dmflow migrate`, `dmflow runs`, `dmflow show RUN_ID`).\n"
        "Still to come: the sample dataset and generation, Deep Memory training, and the flows."
    )
    raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except DmflowError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
