"""An embedded Prefect server for the data directory, started on demand and reused.

Without it, every process that runs a flow starts Prefect's temporary server: 15-25 s
before the first flow, in the command's process group (a terminal's Ctrl-C kills it
with the command), left running after a kill -9, and gone when the command ends, with
nothing to look at in the UI. This one is started once, in a session of its own, on
loopback, behind Prefect's basic authentication (the string in `<data dir>/prefect/auth`),
with its state and log under `<data dir>/prefect`; later commands find it through
`server.json`. Nothing here imports Prefect: it is run as a program.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dmflow.driver import process_exists, process_start_time, started_at_matches
from dmflow.errors import ConfigurationError
from dmflow.local_services import (
    file_lock,
    free_port,
    listening_uids,
    owned_directory,
    port_is_free,
    read_private,
    write_private,
)

STARTUP_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class ServerState:
    pid: int
    port: int
    database: str
    """`postgresql` (a database in the embedded PostgreSQL) or `sqlite`."""
    started_at: float | None = None
    """The server process's start time (epoch seconds): a pid alone can be reused."""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _listens_as_us(port: int) -> bool:
    uids = listening_uids(port)
    return uids is None or uids == {os.geteuid()}


def _is_ours(state: ServerState) -> bool:
    if not process_exists(state.pid):
        return False
    if state.started_at is not None:
        started = datetime.fromtimestamp(state.started_at, UTC)
        if started_at_matches(state.pid, started) is not True:
            return False  # another process has the pid now, or it cannot be told
    return _listens_as_us(state.port)


def _healthy(api_url: str, auth_string: str) -> bool:
    token = base64.b64encode(auth_string.encode()).decode()
    request = urllib.request.Request(
        f"{api_url}/health", headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class EmbeddedPrefectServer:
    root: Path
    """`<data dir>/prefect`: state file, log and the server's PREFECT_HOME."""
    database_url: Callable[[], str | None] = lambda: None
    """Asked only when the server starts: `postgresql+asyncpg://...` for a database of its
    own, or None for SQLite under `root`."""

    @property
    def state_file(self) -> Path:
        return self.root / "server.json"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def auth_file(self) -> Path:
        return self.root / "auth"

    def auth_string(self) -> str:
        """`user:password` for Prefect's basic authentication (its server's
        `server.api.auth_string`, its clients' `api.auth_string`), made once and readable
        by its owner only: without it, another local user cannot read or start flow runs.
        The UI asks for it once per browser."""
        if not self.auth_file.is_file():
            owned_directory(self.root)
            write_private(self.auth_file, f"dmflow:{secrets.token_urlsafe(24)}\n")
        return read_private(self.auth_file).strip()

    def running(self) -> ServerState | None:
        """The server this data directory started, if it is up and answering. Trusted
        (sent the login) only when the recorded process still runs, started when it was
        recorded, and whatever listens on its port is this user's: a pid can be reused
        and a port taken by another local user once the server stopped."""
        try:
            state = ServerState(**json.loads(read_private(self.state_file)))
        except (OSError, ValueError, TypeError, ConfigurationError):
            return None
        if not _is_ours(state) or not _healthy(state.api_url, self.auth_string()):
            return None
        return state

    def ensure_running(self, on_start: Callable[[], None] = lambda: None) -> ServerState:
        """The running server, started first (after `on_start`) if there is none."""
        owned_directory(self.root)
        with self._lock():
            state = self.running()
            if state is None:
                on_start()
                state = self._start()
        return state

    def stop(self) -> ServerState | None:
        """Stop the server (its whole session); None if none was running."""
        with self._lock():
            state = self.running()
            if state is not None:
                with suppress(ProcessLookupError):
                    os.killpg(state.pid, signal.SIGTERM)
                deadline = time.monotonic() + 20
                while process_exists(state.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if process_exists(state.pid):
                    with suppress(ProcessLookupError):
                        os.killpg(state.pid, signal.SIGKILL)
        return state  # the state file stays: the next start reuses its port

    def _start(self) -> ServerState:
        port = self._previous_port() or free_port()
        home = self.root / "home"
        home.mkdir(exist_ok=True, mode=0o700)
        auth = self.auth_string()
        env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_API_AUTH_STRING": auth,
            "PREFECT_API_AUTH_STRING": auth,
        }
        database = self.database_url()
        if database:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = database
        else:
            env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
        argv = [sys.executable, "-m", "prefect", "server", "start"]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        with self.log_file.open("ab") as log:
            os.chmod(self.log_file, 0o600)
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C never reaches it
            )
        started = process_start_time(process.pid)
        state = ServerState(
            process.pid,
            port,
            "postgresql" if database else "sqlite",
            started.timestamp() if started else None,
        )
        self._wait_until_healthy(process, state, auth)
        write_private(self.state_file, json.dumps(state.__dict__))
        return state

    def _previous_port(self) -> int | None:
        """The port it had last time, if free: the UI's address stays the same."""
        try:
            port = int(json.loads(read_private(self.state_file))["port"])
        except (OSError, ValueError, KeyError, TypeError, ConfigurationError):
            return None
        return port if port_is_free(port) else None

    def _wait_until_healthy(
        self, process: subprocess.Popen[bytes], state: ServerState, auth: str
    ) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not (_listens_as_us(state.port) and _healthy(state.api_url, auth)):
            if process.poll() is not None or time.monotonic() > deadline:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                raise ConfigurationError(
                    f"the embedded Prefect server did not start (see {self.log_file}); or "
                    "point PREFECT_API_URL at a Prefect server of your own"
                )
            time.sleep(0.25)

    def _lock(self) -> AbstractContextManager[None]:
        return file_lock(self.root / "lock")
