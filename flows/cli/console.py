"""What every command shares: the Typer apps, the two consoles, the store, run ids."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer
from rich.console import Console

from dmflow import resources
from dmflow.models import TrainingRun
from dmflow.run_ids import resolve_run
from dmflow.store.base import RunStore

# Prefect reads these once, when first imported (inside the commands): no analytics, and
# time for a slow machine's temporary server. The commands point it at a server first.
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
server_app = typer.Typer(
    help="The embedded servers of the data directory.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(server_app, name="server")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the rows as JSON, schema column names.")
]
RunIdArgument = Annotated[
    str, typer.Argument(help="A run id, or a unique prefix of 6 or more characters.")
]
VerboseOption = Annotated[bool, typer.Option(help="Show Prefect's log lines.")]


def store() -> RunStore:
    """The process's one store (closed when the process exits)."""
    return resources.store()


def dumped(runs: list[TrainingRun] | TrainingRun) -> str:
    if isinstance(runs, TrainingRun):
        return json.dumps(runs.model_dump(mode="json"), indent=2)
    return json.dumps([run.model_dump(mode="json") for run in runs], indent=2)


def resolve(run_id: str) -> TrainingRun:
    """The run a full id or a unique prefix names; otherwise a usage error."""
    try:
        return resolve_run(store(), run_id)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="RUN_ID") from None
