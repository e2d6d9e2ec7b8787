"""`dmflow`: the command line people and scripts use.

Exit codes: 0 success, 1 a dmflow error (the message says what to do), 2 bad usage.
One module per concern: `console` (what every command shares), `prefect_address`
(which Prefect server), `launcher` (running a flow from a command) and the commands,
grouped by what they do.
"""

from __future__ import annotations

import os
import sys

from rich.markup import escape

from dmflow.errors import DmflowError
from dmflow.redaction import scrub
from flows.cli import runs_commands, serving_commands, training_commands
from flows.cli.console import app, err, server_app
from flows.cli.launcher import Interrupted

COMMAND_MODULES = (runs_commands, training_commands, serving_commands)
"""Imported for their commands, which register themselves on `app`."""


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


__all__ = ["app", "main", "server_app"]
