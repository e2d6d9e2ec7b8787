"""Addresses in the Prefect UI that open where they say, login included.

Prefect 3 serves two UIs: the old one at `/` and the current one at `/v2` (its
default). Before login, an old-UI page such as `/runs/flow-run/<id>` shows "Page not
found" with no login form; the current UI's pages go through its login and back. Which
UI is current, and where, is the server's own answer at `/ui-settings` (no login
needed), so a Prefect upgrade that moves it again moves our links with it.
"""

from __future__ import annotations

import json
import os
import shlex
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class PrefectUI:
    pages: str
    """Where the UI's pages live, e.g. `http://127.0.0.1:4200/v2`."""

    def flow_run(self, flow_run_id: UUID | str) -> str:
        return f"{self.pages}/runs/flow-run/{flow_run_id}"

    def deployments(self) -> str:
        return f"{self.pages}/deployments"


def server_address(api_url: str) -> str:
    """`http://host:port` for `http://host:port/api`."""
    return api_url.rstrip("/").removesuffix("/api")


def _pages_path(settings: dict[str, object]) -> str | None:
    default = settings.get("default_ui")
    base = settings.get(f"{default}_base_url") if isinstance(default, str) else None
    return base.rstrip("/") if isinstance(base, str) else None


def prefect_ui(server: str) -> PrefectUI:
    """The UI of the Prefect server at `server` (`http://host:port`). `PREFECT_UI_URL`,
    when set, is taken as it is (Prefect Cloud, a proxy); otherwise the server says where
    its current UI is, and an old server that cannot say keeps its pages at `/`."""
    if explicit := os.environ.get("PREFECT_UI_URL"):
        return PrefectUI(explicit.rstrip("/"))
    server = server.rstrip("/")
    try:
        with urllib.request.urlopen(f"{server}/ui-settings", timeout=PROBE_TIMEOUT_S) as reply:
            settings = json.loads(reply.read())
    except (OSError, ValueError):
        return PrefectUI(server)
    path = _pages_path(settings) if isinstance(settings, dict) else None
    return PrefectUI(server + (path or ""))


def server_env_lines(api_url: str, auth_file: Path) -> list[str]:
    """`eval`-able lines for a POSIX shell, like `docker-machine env`: the login is read
    from its 0600 file when the line runs, so the secret never reaches the terminal."""
    return [
        f"export PREFECT_API_URL={shlex.quote(api_url)}",
        f'export PREFECT_API_AUTH_STRING="$(cat {shlex.quote(str(auth_file))})"',
        "# Point the prefect CLI and Python at dmflow's Prefect server by running:",
        '# eval "$(dmflow server env)"',
    ]
