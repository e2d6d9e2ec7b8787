"""`dmflow`: the command line people and scripts use.

Exit codes: 0 success, 1 a dmflow error (the message says what to do), 2 bad usage.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from dmflow import interrupts, resources
from dmflow.database import database_url
from dmflow.dataset_names import canonical_dataset
from dmflow.db.migrations import apply_migrations, discover, pending
from dmflow.deeplake_support import start_importing_deeplake
from dmflow.errors import ConfigurationError, DatabaseUnavailable, DmflowError
from dmflow.models import Recovery, TrainingRun
from dmflow.params import RunParams
from dmflow.prefect_ui import PrefectUI, prefect_ui, server_address, server_env_lines
from dmflow.redaction import scrub
from dmflow.run_ids import resolve_run, short
from dmflow.status import RunStatus
from dmflow.store.base import RunStore
from dmflow.store.postgres import check_reachable
from flows.runtime import settle_imported_objects
from flows.views import (
    chunks_done,
    dead_runs_note,
    recall_table,
    run_card,
    runs_table,
    why_dead,
)

if TYPE_CHECKING:
    from dmflow.prefect_server import EmbeddedPrefectServer, ServerState

# Prefect reads these once, when first imported (inside the commands below): no
# analytics. The commands point it at a server first (`_prefect_ui`).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

app = typer.Typer(
    name="dmflow",
    help="Turn a DeepLake vector store into Deep Memory training data and a trained model.",
    no_args_is_help=True,
    add_completion=False,
    # Locals in a traceback can hold a connection URL or an API key.
    pretty_exceptions_show_locals=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the rows as JSON, schema column names.")
]


@contextmanager
def _store() -> Iterator[RunStore]:
    """The process's one store (closed when the process exits)."""
    yield resources.store()


def _dump(runs: list[TrainingRun] | TrainingRun) -> str:
    if isinstance(runs, TrainingRun):
        return json.dumps(runs.model_dump(mode="json"), indent=2)
    return json.dumps([run.model_dump(mode="json") for run in runs], indent=2)


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
    with _store() as store:
        wanted = canonical_dataset(dataset) if dataset is not None else None
        found = store.list_runs(dataset=wanted, limit=limit)
    if as_json:
        print(_dump(found))
        return
    if not found:
        out.print("no training runs yet")
        return
    settings = resources.settings()
    dead = {str(run.id): run for run in found if why_dead(run, settings)}
    out.print(runs_table(found, out.width, dead=frozenset(dead)))
    for line in dead_runs_note({short(r.id): r.status.value for r in dead.values()}):
        out.print(escape(line), highlight=False)


ENV_HINT = 'eval "$(dmflow server env)"'

RunIdArgument = Annotated[
    str, typer.Argument(help="A run id, or a unique prefix of 6 or more characters.")
]


def _resolve(store: RunStore, run_id: str) -> TrainingRun:
    try:
        return resolve_run(store, run_id)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="RUN_ID") from None


def _known_ui() -> PrefectUI | None:
    """The Prefect UI if one is known without starting anything."""
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        from dmflow.database import embedded_prefect_server

        state = embedded_prefect_server(resources.settings()).running()
        api = state.api_url if state else None
    return prefect_ui(server_address(api)) if api else None


@app.command()
def show(run_id: RunIdArgument, as_json: JsonOption = False) -> None:
    """Show one training run: where it stands, recall, usage, what to do next."""
    with _store() as store:
        run = _resolve(store, run_id)
    if as_json:
        print(_dump(run))
        return
    out.print(run_card(run, _known_ui(), dead=why_dead(run, resources.settings())))


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


def _print_outcome(run: TrainingRun) -> None:
    out.print(
        f"run {run.id}: [bold]{run.status.value}[/bold] - {run.processed_chunks}/"
        f"{run.total_chunks} chunks, {run.pair_count} pairs"
    )
    if run.error_message:
        err.print(f"[red]error:[/red] {escape(scrub(run.error_message))}", highlight=False)
    if table := recall_table(run.metrics or {}):
        out.print(table)


def _describe(run: TrainingRun) -> str:
    if run.status is RunStatus.GENERATING:
        return f"generating questions: {chunks_done(run)} chunks, {run.pair_count} pairs"
    if run.status is RunStatus.TRAINING:
        job = f" (job {run.deeplake_job_id})" if run.deeplake_job_id else ""
        return f"training Deep Memory on {run.pair_count} pairs{job}"
    return f"run {run.status.value}"


class _ProgressDisplay(threading.Thread):
    """A status line fed from the database (the source of truth), while the flow runs."""

    def __init__(self, dataset: str) -> None:
        super().__init__(name="dmflow-progress", daemon=True)
        self.dataset = dataset
        self.started = datetime.now(UTC) - timedelta(seconds=5)
        self.stopped = threading.Event()

    def run(self) -> None:
        starting = "starting the training run"
        with err.status(starting) as line, _store() as store:
            while not self.stopped.wait(1.0):
                try:
                    runs = store.list_runs(dataset=self.dataset, limit=1)
                except DatabaseUnavailable:
                    continue  # the flow reports it, once it has waited for it

                if runs and runs[0].created_at and runs[0].created_at >= self.started:
                    line.update(_describe(runs[0]))

    def __enter__(self) -> _ProgressDisplay:
        if err.is_terminal:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.is_alive():
            self.join(5)


def _prefect_ui() -> PrefectUI:
    """Point this process at a Prefect server before Prefect is imported: PREFECT_API_URL
    when set, else the data directory's embedded server (started once, then reused).
    Returns its UI."""
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        server, state = _embedded_prefect_running()
        api = state.api_url
        os.environ["PREFECT_API_URL"] = api
        os.environ["PREFECT_API_AUTH_STRING"] = server.auth_string()
    return prefect_ui(server_address(api))


def _embedded_prefect_running() -> tuple[EmbeddedPrefectServer, ServerState]:
    """The data directory's Prefect server, started (and said so) if it is not running."""
    from dmflow.database import embedded_prefect_server

    starting = "starting the embedded Prefect server (once; later commands reuse it)"
    server = embedded_prefect_server(resources.settings())
    return server, server.ensure_running(on_start=lambda: err.print(starting))


def _print_flow_run(ui: PrefectUI, state: Any) -> None:
    flow_run_id = state.state_details.flow_run_id
    if flow_run_id:
        out.print(f"Prefect UI: {ui.flow_run(flow_run_id)}", highlight=False)


class Interrupted(Exception):
    """The command was interrupted by a signal; the message says where the run stands."""


def _run_interruptibly(call: Any, interrupted_run: Callable[[], TrainingRun | None]) -> Any:
    """`asyncio.run(call)`, where Ctrl-C (SIGINT to the whole process group), SIGTERM and
    SIGHUP end the flow as an interrupt: its task is cancelled (a clean unwinding, not an
    exception at an arbitrary point of Prefect's engine), Prefect marks its flow runs
    Crashed and the phase's hook fails the run with what happened and how to resume. A
    second signal exits at once."""
    from prefect.exceptions import TerminationSignal

    from flows.interruption import signals_cancel

    async def main() -> Any:
        with signals_cancel(asyncio.current_task()):
            return await call

    try:
        with signals_cancel(None, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
            result = asyncio.run(main())
    except (KeyboardInterrupt, TerminationSignal, asyncio.CancelledError) as exc:
        if isinstance(exc, TerminationSignal):
            interrupts.note(exc.signal)
        if interrupts.received() is None:
            raise  # not a signal of ours: nothing to word
        result = None
    how = interrupts.received()
    if how is not None:
        run = interrupted_run()
        where = "" if run is None else f": run {run.id} is {_stored_status(run)}"
        raise Interrupted(f"interrupted ({how}){where}")
    return result


def _stored_status(run: TrainingRun) -> str:
    with _store() as store:
        now = store.get_run(run.id)
    resume = f"; resume with `dmflow recover {short(now.id)}`" if now.status.is_failed else ""
    return f"{now.status.value} at {chunks_done(now)} chunks{resume}"


def _newest_run(dataset: str) -> TrainingRun | None:
    with _store() as store:
        runs = store.list_runs(dataset=dataset, limit=1)
    return runs[0] if runs else None


def _run_flow(dataset: str, params: RunParams, verbose: bool = False) -> TrainingRun:
    """Run the parent flow in this process and return the run it drove."""
    resources.store()  # a database that cannot be reached fails here, before Prefect starts
    ui = _prefect_ui()
    if not verbose:  # our status line and outcome instead of Prefect's log lines (the UI
        # keeps them); its crash reports too: the outcome says what happened and what to do.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    from prefect.client.schemas.objects import State

    from flows.training_run import training_run

    settle_imported_objects()
    # The run opens its dataset first thing: deeplake's import (~1 s of CPU) overlaps the
    # flow run's creation, which mostly waits for the server (not Prefect's own import).
    start_importing_deeplake()
    call: Any = training_run(dataset, return_state=True, **params.model_dump(exclude_unset=True))
    with _ProgressDisplay(dataset):
        state: State[Any] = _run_interruptibly(call, lambda: _newest_run(dataset))
    outcome = state.result(raise_on_failure=False)
    _print_flow_run(ui, state)
    if isinstance(outcome, TrainingRun):
        return outcome
    if isinstance(outcome, DatabaseUnavailable):
        raise outcome  # it says what is safe and what to do; the run cannot be read now
    with _store() as store:  # failed: the run this flow run made, if it made one
        flow_run_id = state.state_details.flow_run_id
        run = store.find_run_by_flow_run_id(flow_run_id) if flow_run_id else None
    if run is not None:
        return run
    if isinstance(outcome, DmflowError):
        raise outcome  # refused before a run existed (RunBlocked, bad settings)
    raise DmflowError(f"the training run failed before it started: {outcome}")


DEFAULTS = RunParams()
"""The run parameters' defaults, from their one declaration."""


def _run_params(arguments: dict[str, Any]) -> RunParams:
    """The options as `RunParams`, a bad value reported as a usage error naming its option."""
    try:
        return RunParams.from_arguments(arguments)
    except ValidationError as exc:
        problem = exc.errors()[0]
        option = "--" + str(problem["loc"][0]).replace("_", "-")
        raise typer.BadParameter(f"{option}: {problem['msg']}") from None


@app.command()
def run(
    dataset: Annotated[str, typer.Argument(help="DeepLake dataset: local path or hub://org/name.")],
    generator: Annotated[str, typer.Option(help="local or openai.")] = DEFAULTS.generator,
    model: Annotated[
        str | None, typer.Option(help="LLM for the openai generator.")
    ] = DEFAULTS.model,
    questions_per_chunk: Annotated[int, typer.Option(help="1-10.")] = DEFAULTS.questions_per_chunk,
    prompt: Annotated[
        str, typer.Option(help="list, or one_question (one per request: small models).")
    ] = DEFAULTS.prompt,
    max_pairs: Annotated[
        int, typer.Option(help="Stop generating at this many pairs.")
    ] = DEFAULTS.max_pairs,
    sample: Annotated[
        str,
        typer.Option(help="Chunks a capped run asks: spread (over the whole dataset) or in_order."),
    ] = DEFAULTS.sample,
    sample_seed: Annotated[
        int, typer.Option(help="Picks the spread sample; same seed, same chunks.")
    ] = DEFAULTS.sample_seed,
    batch_size: Annotated[int, typer.Option(help="Chunks per task, 1-1000.")] = DEFAULTS.batch_size,
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="Train after generating.")
    ] = DEFAULTS.train,
    trainer: Annotated[str, typer.Option(help="local or managed.")] = DEFAULTS.trainer,
    embedder: Annotated[
        str | None,
        typer.Option(help="hashing-<d>, sentence-transformers:<dir> or openai:<model>."),
    ] = DEFAULTS.embedder,
    include_previous_runs: Annotated[
        bool, typer.Option(help="Also train on the dataset's earlier completed runs' pairs.")
    ] = DEFAULTS.include_previous_runs,
    poll_intervals_s: Annotated[
        list[float] | None,
        typer.Option(help="Waits between job status checks (repeat the option).", hidden=True),
    ] = DEFAULTS.poll_intervals_s,
    training_timeout_s: Annotated[
        float, typer.Option(help="Cancel a training job still running after this long.")
    ] = DEFAULTS.training_timeout_s,
    verbose: Annotated[bool, typer.Option(help="Show Prefect's log lines.")] = False,
) -> None:
    """Run a whole training run in this process. Exit 0 only when it ends as asked:
    completed (or generated, with --no-train)."""
    params = _run_params(locals())
    finished = _run_flow(canonical_dataset(dataset), params, verbose=verbose)
    _print_outcome(finished)
    wanted = RunStatus.COMPLETED if params.train else RunStatus.GENERATED
    if finished.status is not wanted:
        raise typer.Exit(1)


@app.command()
def recover(
    run_id: RunIdArgument,
    verbose: Annotated[bool, typer.Option(help="Show Prefect's log lines.")] = False,
) -> None:
    """Resume a failed run at its phase (or train a run waiting at generated)."""
    with _store() as store:  # an unreachable database fails here, before Prefect starts
        run = _resolve(store, run_id)
    if run.status is RunStatus.COMPLETED:  # nothing to do: no need for Prefect at all
        out.print(f"run {run.id} is completed: already completed: nothing to do")
        return
    ui = _prefect_ui()
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    from prefect.client.schemas.objects import State

    from flows.recovery import recover_training_run

    settle_imported_objects()
    start_importing_deeplake()  # either phase opens the dataset first thing
    call: Any = recover_training_run(run.id, return_state=True)
    state: State[Any] = _run_interruptibly(call, lambda: run)
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, DmflowError):
        raise outcome
    _print_flow_run(ui, state)
    if isinstance(outcome, Recovery) and not outcome.recovered:
        out.print(f"run {run.id} is {outcome.run.status.value}: {escape(outcome.message)}")
        return
    if isinstance(outcome, Recovery):
        finished = outcome.run
    else:  # the recovery failed: the run records how
        with _store() as store:
            finished = store.get_run(run.id)
    _print_outcome(finished)
    if finished.status not in (RunStatus.COMPLETED, RunStatus.GENERATED):
        raise typer.Exit(1)


@app.command()
def delete(
    run_id: RunIdArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a failed run with its pairs and chunk ledger."""
    with _store() as store:
        run = _resolve(store, run_id)
        if not yes:
            typer.confirm(
                f"delete run {run.id} ({run.status.value}, {run.dataset}) and its "
                f"{run.pair_count} pairs?",
                abort=True,
            )
        deleted = store.delete_failed_run(run.id)
    out.print(f"deleted run {deleted.id} and its {deleted.pair_count} pairs")


@app.command(name="serve")
def serve_deployments() -> None:
    """Serve every deployment (training-run, recover-training-run, recover-failed-runs
    every 15 minutes, delete-failed-run) from this process, against PREFECT_API_URL or
    the embedded Prefect server."""
    embedded = not os.environ.get("PREFECT_API_URL")
    ui = _prefect_ui()
    from flows.deployment_table import DEPLOYMENTS, TRAINING_RUN
    from flows.serve import serve_all

    out.print("serving, until Ctrl-C:", highlight=False)
    for deployment in DEPLOYMENTS:
        when = f"  (cron {deployment.cron})" if deployment.cron else ""
        out.print(f"  {deployment.full_name}{when}", highlight=False)
    out.print(f"Prefect UI: {ui.deployments()}", highlight=False)
    if embedded:
        out.print(f"prefect CLI: {ENV_HINT} in another shell, then", highlight=False)
    out.print(
        f"  prefect deployment run {TRAINING_RUN.full_name} --param dataset=PATH --watch",
        highlight=False,
    )

    serve_all()
    # Prefect pauses served schedules when serving stops: with nothing to run them, an
    # active schedule would pile up late runs that all start at the next `dmflow serve`.
    err.print(
        "stopped serving: the deployments are paused, and their schedules (the "
        "recover-failed-runs sweep) wait until `dmflow serve` runs again",
        highlight=False,
    )


@app.command()
def demo() -> None:
    """Build the sample dataset and run a whole training run offline."""
    from dmflow.local_services import owned_directory
    from dmflow.sample import build_sample_dataset

    # The data directory is made here (0700), before the sample is written into it: made
    # by DeepLake's own mkdir, it was world-readable, and so were the sample and adapter.
    dataset = owned_directory(resources.settings().resolved_data_dir()) / "sample"
    if not (dataset / "dataset_meta.json").is_file():
        written = build_sample_dataset(dataset, overwrite=True)
        out.print(
            f"built the sample dataset: {written} chunks of Python's documentation at "
            f"{escape(str(dataset))}"
        )
    else:
        out.print(f"using the sample dataset at {escape(str(dataset))}")
    out.print("running a training run: local questions, local Deep Memory adapter")
    finished = _run_flow(str(dataset), RunParams())
    _print_outcome(finished)
    if finished.status is not RunStatus.COMPLETED:
        raise typer.Exit(1)


server_app = typer.Typer(
    help="The embedded servers of the data directory.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(server_app, name="server")


@server_app.command("status")
def server_status() -> None:
    """Show the embedded PostgreSQL and Prefect server of the data directory."""
    from dmflow.database import embedded_postgres, embedded_prefect_server

    settings = resources.settings()
    postgres = embedded_postgres(settings)
    if postgres is None:
        out.print("postgres  not embedded (DMFLOW_DATABASE_URL or Supabase is set)")
    else:
        running = postgres.is_running()
        where = f"127.0.0.1:{postgres.port()}" if running else "stopped"
        out.print(f"postgres  {where}  {escape(str(postgres.root))}", highlight=False)
    prefect_server = embedded_prefect_server(settings)
    prefect = prefect_server.running()
    if prefect is None:
        out.print("prefect   stopped (the next run, recover or demo starts it)")
    else:
        pages = prefect_ui(prefect.ui_url).pages
        out.print(
            f"prefect   {pages}  pid {prefect.pid}, database {prefect.database}",
            highlight=False,
        )
        out.print(f"          API {prefect.api_url}", highlight=False)
        out.print(
            f"          UI login: the string in {escape(str(prefect_server.auth_file))}",
            highlight=False,
        )
        out.print(f"          prefect CLI: {ENV_HINT}", highlight=False)


@server_app.command("env")
def server_env() -> None:
    """Print the shell lines that point the `prefect` CLI and Python at the data
    directory's Prefect server (started if it is not running):
    eval "$(dmflow server env)"."""
    server, state = _embedded_prefect_running()
    for line in server_env_lines(state.api_url, server.auth_file):
        print(line)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the embedded Prefect server and PostgreSQL of the data directory."""
    from dmflow.database import embedded_postgres, embedded_prefect_server

    settings = resources.settings()
    stopped = embedded_prefect_server(settings).stop()
    out.print("prefect   stopped" if stopped else "prefect   was not running")
    postgres = embedded_postgres(settings)
    if postgres is not None and postgres.is_running():
        resources.close_all()
        postgres.stop()
        out.print("postgres  stopped")


def main() -> None:
    from flows.runtime import leave_objects_to_the_exit, release_stray_worker_threads

    # Whatever dmflow creates (datasets, adapters, servers' files and their children's)
    # is its user's alone, whatever the shell's umask.
    os.umask(0o077)
    try:
        app()
    except DmflowError as exc:
        err.print(f"[red]error:[/red] {escape(scrub(str(exc)))}", highlight=False)
        sys.exit(1)
    except (Interrupted, KeyboardInterrupt) as exc:
        err.print(escape(str(exc)) or "interrupted", highlight=False)
        sys.exit(130)
    finally:
        release_stray_worker_threads()
        leave_objects_to_the_exit()


if __name__ == "__main__":
    main()
