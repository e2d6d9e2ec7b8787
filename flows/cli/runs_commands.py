"""Commands that read and change the database without running a flow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dmflow import resources
from dmflow.database import database_url
from dmflow.dataset_names import canonical_dataset
from dmflow.db.migrations import apply_migrations, discover, pending
from dmflow.errors import ConfigurationError
from dmflow.run_ids import short
from dmflow.store.postgres import check_reachable
from flows.cli.console import JsonOption, RunIdArgument, app, dumped, out, resolve, store
from flows.cli.prefect_address import known_ui
from flows.views import dead_runs_note, run_card, runs_table, why_dead


@app.command()
def migrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List pending migrations only.")
    ] = False,
) -> None:
    """Apply pending migrations from supabase/migrations (recorded like `supabase db push`)."""
    settings = resources.settings()
    if settings.database_url is None and settings.supabase_url is not None:
        raise ConfigurationError(
            "migrations need a direct database connection: set DMFLOW_DATABASE_URL to the "
            "project's connection string (Project Settings > Database), or run `supabase db push`"
        )
    url = database_url(settings)
    check_reachable(url, settings.db_connect_timeout_s)  # a bad URL: one line, no password
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
    wanted = canonical_dataset(dataset) if dataset is not None else None
    found = store().list_runs(dataset=wanted, limit=limit)
    if as_json:
        print(dumped(found))
        return
    if not found:
        out.print("no training runs yet")
        return
    settings = resources.settings()
    dead = {str(run.id): run for run in found if why_dead(run, settings)}
    out.print(runs_table(found, out.width, dead=frozenset(dead)))
    for line in dead_runs_note({short(r.id): r.status.value for r in dead.values()}):
        out.print(escape(line), highlight=False)


@app.command()
def show(run_id: RunIdArgument, as_json: JsonOption = False) -> None:
    """Show one training run: where it stands, recall, usage, what to do next."""
    run = resolve(run_id)
    if as_json:
        print(dumped(run))
        return
    out.print(run_card(run, known_ui(), dead=why_dead(run, resources.settings())))


@app.command()
def delete(
    run_id: RunIdArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a failed run with its pairs and chunk ledger."""
    run = resolve(run_id)
    if not yes:
        typer.confirm(
            f"delete run {run.id} ({run.status.value}, {run.dataset}) and its "
            f"{run.pair_count} pairs?",
            abort=True,
        )
    deleted = store().delete_failed_run(run.id)
    out.print(f"deleted run {deleted.id} and its {deleted.pair_count} pairs")


@app.command()
def sample(
    path: Annotated[Path, typer.Argument(help="Directory to write the DeepLake dataset to.")],
    large: Annotated[
        bool, typer.Option("--large", help="Also the standard library's docstrings.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what is there.")] = False,
    embedder: Annotated[
        str | None,
        typer.Option(
            "--embedder",
            help="What embeds the chunks: hashing-<d> (default hashing-512), "
            "sentence-transformers:<model dir>.",
        ),
    ] = None,
) -> None:
    """Build a local sample DeepLake dataset from Python's own documentation (offline)."""
    from dmflow.embedding.factory import DEFAULT_EMBEDDER, build_embedder
    from dmflow.sample import build_sample_dataset

    chosen = build_embedder(embedder or DEFAULT_EMBEDDER, resources.settings())
    written = build_sample_dataset(path, large=large, overwrite=overwrite, embedder=chosen)
    out.print(f"wrote {written} chunks to {escape(str(path.expanduser().resolve()))}")
