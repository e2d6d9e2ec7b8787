"""The embedded Prefect server's login goes only to the server dmflow started.

After `dmflow server stop`, `server.json` keeps the old pid and port. Another local
user can listen on that port and fork until a process of theirs has that pid; dmflow
must then neither call it its server nor send it the login."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmflow.driver import process_start_time
from dmflow.local_services import free_port
from dmflow.prefect_server import EmbeddedPrefectServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as `nobody`")

LISTENER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    conn.settimeout(2)
    try:
        data = conn.recv(65536)
    except OSError:
        data = b""
    with open(sys.argv[2], "ab") as seen:
        seen.write(data or b"(connected)")
    conn.close()
"""


@pytest.fixture
def shared() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dmflow-trust-"))
    path.chmod(0o777)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def listen_as_nobody(port: int, shared: Path) -> subprocess.Popen[str]:
    script = shared / "listener.py"
    script.write_text(LISTENER)
    script.chmod(0o644)
    listener = subprocess.Popen(
        [
            "runuser",
            "-u",
            "nobody",
            "--",
            "/usr/bin/python3",
            str(script),
            str(port),
            str(shared / "received"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # runuser forks: the group ends the listener too
    )
    assert listener.stdout is not None and listener.stdout.readline().strip() == "listening"
    return listener


def recorded(root: Path, pid: int, port: int, started_at: float | None) -> EmbeddedPrefectServer:
    server = EmbeddedPrefectServer(root)
    root.mkdir(mode=0o700)
    state = {"pid": pid, "port": port, "database": "sqlite", "started_at": started_at}
    (root / "server.json").write_text(json.dumps(state))
    (root / "server.json").chmod(0o600)
    return server


def test_a_port_taken_by_another_user_is_not_the_server(tmp_path: Path, shared: Path) -> None:
    port = free_port()
    listener = listen_as_nobody(port, shared)
    try:
        # The worst case: the recorded pid and its start time both match (the other
        # user won the pid race); only the listening socket's owner tells.
        pid = listener.pid
        started = process_start_time(pid)
        assert started is not None
        server = recorded(tmp_path / "prefect", pid, port, started.timestamp())
        assert server.running() is None
        time.sleep(0.5)
        assert not (shared / "received").exists()  # no request, so no login, was sent
    finally:
        os.killpg(listener.pid, signal.SIGKILL)
        listener.wait()


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_reused_pid_is_neither_the_server_nor_stopped(tmp_path: Path) -> None:
    # A healthy server of ours answers on the port, but the recorded pid now belongs to
    # an unrelated process (started after the one recorded): it must not be killed.
    health = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=health.serve_forever, daemon=True).start()
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        started = process_start_time(bystander.pid)
        assert started is not None
        port = health.server_address[1]
        server = recorded(tmp_path / "prefect", bystander.pid, port, started.timestamp() - 60)
        assert server.running() is None
        assert server.stop() is None
        time.sleep(0.2)
        assert bystander.poll() is None  # never signalled
    finally:
        health.shutdown()
        bystander.kill()
        bystander.wait()
