"""`dmflow serve` and `dmflow server status|env|stop`: the long-lived processes."""

from __future__ import annotations

import os

from rich.markup import escape

from dmflow import resources
from dmflow.prefect_ui import prefect_ui, server_env_lines
from flows.cli.console import app, err, out, server_app
from flows.cli.prefect_address import ENV_HINT, embedded_prefect_running, point_at_prefect


@app.command(name="serve")
def serve_deployments() -> None:
    """Serve every deployment (training-run, recover-training-run, recover-failed-runs
    every 15 minutes, delete-failed-run) from this process, against PREFECT_API_URL or
    the embedded Prefect server."""
    embedded = not os.environ.get("PREFECT_API_URL")
    ui = point_at_prefect()
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
    server, state = embedded_prefect_running()
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
