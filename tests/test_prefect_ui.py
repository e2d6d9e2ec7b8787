"""Where dmflow's printed UI addresses point: the page the server's `/ui-settings` names
as its current UI, the root for a server that cannot say, `PREFECT_UI_URL` as given."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dmflow.prefect_ui import prefect_ui, server_env_lines

RUN = "0d6c8432-5d2a-43ab-a366-d6f14fd03e08"


def serving(settings: dict[str, object] | None) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if settings is None or self.path != "/ui-settings":
                self.send_error(404)
                return
            body = json.dumps(settings).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def prefect_39() -> Iterator[str]:
    """What Prefect 3.9's server answers (read off the embedded server)."""
    yield from serving(
        {"auth": "BASIC", "default_ui": "v2", "available_uis": ["v1", "v2"]}
        | {"v1_base_url": "/", "v2_base_url": "/v2"}
    )


@pytest.fixture
def older_prefect() -> Iterator[str]:
    yield from serving(None)


def test_links_go_to_the_current_ui(prefect_39: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_UI_URL", raising=False)
    ui = prefect_ui(prefect_39)
    assert ui.flow_run(RUN) == f"{prefect_39}/v2/runs/flow-run/{RUN}"
    assert ui.deployments() == f"{prefect_39}/v2/deployments"


def test_a_server_that_cannot_say_keeps_its_pages_at_the_root(
    older_prefect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_UI_URL", raising=False)
    assert prefect_ui(older_prefect).flow_run(RUN) == f"{older_prefect}/runs/flow-run/{RUN}"
    assert prefect_ui("http://127.0.0.1:9").pages == "http://127.0.0.1:9"  # nothing listens


def test_prefect_ui_url_is_taken_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = "https://app.prefect.cloud/account/a/workspace/w"
    monkeypatch.setenv("PREFECT_UI_URL", cloud + "/")
    assert prefect_ui("http://127.0.0.1:9").flow_run(RUN) == f"{cloud}/runs/flow-run/{RUN}"


def test_the_env_lines_read_the_secret_when_they_run(tmp_path: Path) -> None:
    auth = tmp_path / "data dir" / "auth"
    lines = server_env_lines("http://127.0.0.1:4200/api", auth)
    assert lines[0] == "export PREFECT_API_URL=http://127.0.0.1:4200/api"
    assert lines[1] == f"export PREFECT_API_AUTH_STRING=\"$(cat '{auth}')\""
