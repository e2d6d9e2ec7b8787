"""Commands that run a flow in this process: `run`, `recover`, `demo`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from dmflow import resources
from dmflow.dataset_names import canonical_dataset
from dmflow.errors import DatabaseUnavailable, DmflowError
from dmflow.models import Recovery, TrainingRun
from dmflow.params import RunParams
from dmflow.redaction import scrub
from dmflow.status import RunStatus
from flows.cli.console import RunIdArgument, VerboseOption, app, err, out, resolve, store
from flows.cli.launcher import WatchedRun, launch
from flows.views import chunks_done, recall_table

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

DEFAULTS = RunParams()
"""The run parameters' defaults, from their one declaration."""


def print_outcome(run: TrainingRun) -> None:
    out.print(
        f"run {run.id}: [bold]{run.status.value}[/bold] - {chunks_done(run)} chunks, "
        f"{run.pair_count} pairs"
    )
    if run.error_message:
        err.print(f"[red]error:[/red] {escape(scrub(run.error_message))}", highlight=False)
    if table := recall_table(run.metrics):
        out.print(table)


def run_training(dataset: str, params: RunParams, *, verbose: bool = False) -> TrainingRun:
    """Run the parent flow in this process and return the run it drove."""

    def start() -> Any:
        from flows.training_run import training_run

        return training_run(dataset, return_state=True, **params.model_dump(exclude_unset=True))

    state: State[Any] = launch(start, WatchedRun(dataset=dataset), verbose=verbose)
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, TrainingRun):
        return outcome
    if isinstance(outcome, DatabaseUnavailable):
        raise outcome  # it says what is safe and what to do; the run cannot be read now
    # failed: the run this flow run made, if it made one
    flow_run_id = state.state_details.flow_run_id
    run = store().find_run_by_flow_run_id(flow_run_id) if flow_run_id else None
    if run is not None:
        return run
    if isinstance(outcome, DmflowError):
        raise outcome  # refused before a run existed (RunBlocked, bad settings)
    raise DmflowError(f"the training run failed before it started: {outcome}")


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
    verbose: VerboseOption = False,
) -> None:
    """Run a whole training run in this process. Exit 0 only when it ends as asked:
    completed (or generated, with --no-train)."""
    params = _run_params(locals())
    finished = run_training(canonical_dataset(dataset), params, verbose=verbose)
    print_outcome(finished)
    wanted = RunStatus.COMPLETED if params.train else RunStatus.GENERATED
    if finished.status is not wanted:
        raise typer.Exit(1)


@app.command()
def recover(run_id: RunIdArgument, verbose: VerboseOption = False) -> None:
    """Resume a failed run at its phase (or train a run waiting at generated)."""
    run = resolve(run_id)  # an unreachable database fails here, before Prefect starts
    if run.status is RunStatus.COMPLETED:  # nothing to do: no need for Prefect at all
        out.print(f"run {run.id} is completed: already completed: nothing to do")
        return

    def start() -> Any:
        from flows.recovery import recover_training_run

        return recover_training_run(run.id, return_state=True)

    state: State[Any] = launch(start, WatchedRun(run_id=run.id), verbose=verbose)
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, DmflowError):
        raise outcome
    if isinstance(outcome, Recovery) and not outcome.recovered:
        out.print(f"run {run.id} is {outcome.run.status.value}: {escape(outcome.message)}")
        return
    # a failed recovery: the run records how
    finished = outcome.run if isinstance(outcome, Recovery) else store().get_run(run.id)
    print_outcome(finished)
    if finished.status not in (RunStatus.COMPLETED, RunStatus.GENERATED):
        raise typer.Exit(1)


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
    finished = run_training(str(dataset), RunParams())
    print_outcome(finished)
    if finished.status is not RunStatus.COMPLETED:
        raise typer.Exit(1)
