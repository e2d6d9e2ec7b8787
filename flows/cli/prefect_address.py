"""The one place the commands learn which Prefect server they talk to.

PREFECT_API_URL when it is set; otherwise the data directory's embedded server. Prefect
reads its settings once, when first imported: `point_at_prefect` runs before that.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dmflow import resources
from dmflow.prefect_ui import PrefectUI, prefect_ui, server_address
from flows.cli.console import err

if TYPE_CHECKING:
    from dmflow.prefect_server import EmbeddedPrefectServer, ServerState

ENV_HINT = 'eval "$(dmflow server env)"'


def known_ui() -> PrefectUI | None:
    """The Prefect UI, if a server is known without starting one."""
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        from dmflow.database import embedded_prefect_server

        state = embedded_prefect_server(resources.settings()).running()
        api = state.api_url if state else None
    return prefect_ui(server_address(api)) if api else None


def point_at_prefect() -> PrefectUI:
    """Point this process at its Prefect server, starting the embedded one (once; later
    commands reuse it) when PREFECT_API_URL is not set. Returns its UI."""
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        server, state = embedded_prefect_running()
        api = state.api_url
        os.environ["PREFECT_API_URL"] = api
        os.environ["PREFECT_API_AUTH_STRING"] = server.auth_string()
    return prefect_ui(server_address(api))


def embedded_prefect_running() -> tuple[EmbeddedPrefectServer, ServerState]:
    """The data directory's Prefect server, started (and said so) if it is not running."""
    from dmflow.database import embedded_prefect_server

    starting = "starting the embedded Prefect server (once; later commands reuse it)"
    server = embedded_prefect_server(resources.settings())
    return server, server.ensure_running(on_start=lambda: err.print(starting))
