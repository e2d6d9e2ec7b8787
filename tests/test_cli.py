"""`dmflow` as people and scripts run it: output, JSON, exit codes."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from dmflow.db.migrations import discover
from dmflow.store.postgres import PostgresRunStore
from dmflow.testing.served import dmflow_serve
from tests.fixtures.cli import DMFLOW, CliRunner, clean_env, embedded_prefect_env
from tests.fixtures.postgres import Database

ROOT = Path(__file__).resolve().parent.parent


def test_migrate_applies_pending_then_has_nothing_to_do(
    dmflow: CliRunner, supabase_like_db: Database
) -> None:
    env = clean_env(DMFLOW_DATABASE_URL=supabase_like_db.url)
    dry = dmflow("migrate", "--dry-run", env=env)
    migrations = len(discover())
    assert dry.returncode == 0 and f"{migrations} pending" in dry.stdout

    first = dmflow("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("applied  ") == migrations
    second = dmflow("migrate", env=env)
    assert second.returncode == 0 and "0 applied now" in second.stdout
    assert supabase_like_db.execute(
        "select count(*) from supabase_migrations.schema_migrations"
    ) == [(migrations,)]


def test_runs_and_show_as_json_use_the_schema_column_names(
    dmflow: CliRunner, db: Database, store: PostgresRunStore
) -> None:
    run = store.create_run("hub://org/docs", params={"generator": "local"})
    env = clean_env(DMFLOW_DATABASE_URL=db.url)

    listed = dmflow("runs", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    columns = {
        r[0]
        for r in db.execute(
            "select column_name from information_schema.columns"
            " where table_name = 'deep_memory_training_runs'"
        )
    }
    assert [row["id"] for row in rows] == [str(run.id)]
    assert set(rows[0]) == columns
    assert rows[0]["status"] == "generating" and rows[0]["params"] == {"generator": "local"}

    shown = dmflow("show", str(run.id), "--json", env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout) == rows[0]

    table = dmflow("runs", env=env)
    assert str(run.id)[:8] in table.stdout and "generating" in table.stdout


def test_show_of_a_missing_run_fails_with_advice(dmflow: CliRunner, db: Database) -> None:
    result = dmflow("show", str(uuid.uuid4()), env=clean_env(DMFLOW_DATABASE_URL=db.url))
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "dmflow runs" in result.stderr


def test_bad_run_id_is_a_usage_error(dmflow: CliRunner, db: Database) -> None:
    result = dmflow("show", "not-a-uuid", env=clean_env(DMFLOW_DATABASE_URL=db.url))
    assert result.returncode == 2


def test_unreachable_database_is_reported(dmflow: CliRunner) -> None:
    env = clean_env(
        DMFLOW_DATABASE_URL="postgresql://nobody@127.0.0.1:9/none", DMFLOW_DB_CONNECT_TIMEOUT_S="2"
    )
    result = dmflow("runs", env=env)
    assert result.returncode == 1
    assert "DMFLOW_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_supabase_url_without_key_is_a_clear_error(dmflow: CliRunner) -> None:
    result = dmflow("runs", env=clean_env(DMFLOW_SUPABASE_URL="https://x.supabase.co"))
    assert result.returncode == 1 and "DMFLOW_SUPABASE_KEY" in result.stderr


def test_sample_builds_a_dataset_and_refuses_to_overwrite(
    dmflow: CliRunner, tmp_path: Path
) -> None:
    target = tmp_path / "corpus"
    result = dmflow("sample", str(target))
    assert result.returncode == 0, result.stderr
    written = int(result.stdout.split()[1])
    assert written > 300
    from dmflow.chunks import DeepLakeChunkSource

    assert DeepLakeChunkSource(str(target)).total == written

    again = dmflow("sample", str(target))
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert dmflow("sample", str(target), "--overwrite").returncode == 0

    unknown = dmflow("sample", str(tmp_path / "other"), "--embedder", "word2vec")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [
        "error: unknown embedder 'word2vec': use hashing-<dimension>, "
        "sentence-transformers:<local model directory> or openai:<model>"
    ]
    assert not (tmp_path / "other").exists()  # refused before anything was written
    smaller = dmflow("sample", str(tmp_path / "small"), "--embedder", "hashing-64")
    assert smaller.returncode == 0, smaller.stderr
    import deeplake

    opened = deeplake.load(str(tmp_path / "small"), read_only=True, verbose=False)
    assert opened.embedding.shape[1] == 64 and opened.info["embedder"] == "hashing-64"


def test_run_with_a_closed_database_port_is_one_line_within_seconds(
    dmflow: CliRunner, tmp_path: Path
) -> None:
    env = clean_env(DMFLOW_DATABASE_URL="postgresql://app@127.0.0.1:9/none")
    for argv in (["run", str(tmp_path / "ds")], ["recover", str(uuid.uuid4())]):
        started = time.monotonic()
        result = dmflow(*argv, env=env)
        elapsed = time.monotonic() - started
        assert result.returncode == 1, result.stderr
        assert "DMFLOW_DATABASE_URL" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        # Not a speed target: it fails before any Prefect start (15-25 s), which it once awaited.
        assert elapsed < 10, elapsed


def test_an_invalid_setting_names_the_variable_and_what_is_allowed(dmflow: CliRunner) -> None:
    result = dmflow("runs", env=clean_env(DMFLOW_STALE_AFTER_S="3"))
    assert result.returncode == 1
    assert "DMFLOW_STALE_AFTER_S" in result.stderr and "greater than or equal to 5" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _post(url: str, auth_string: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if auth_string:
        headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
    request = urllib.request.Request(url, data=b"{}", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


def test_the_embedded_prefect_server_is_started_once_reused_and_stopped(
    dmflow: CliRunner, db: Database, sample_dataset: str, tmp_path: Path
) -> None:
    # No PREFECT_API_URL: dmflow starts a server of its own for the data directory.
    env = embedded_prefect_env(DMFLOW_DATABASE_URL=db.url, DMFLOW_DATA_DIR=str(tmp_path))
    assert "stopped" in dmflow("server", "status", env=env).stdout
    first = dmflow("run", sample_dataset, "--no-train", "--max-pairs", "20", env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "starting the embedded Prefect server" in first.stderr
    [address] = [line for line in first.stdout.splitlines() if line.startswith("Prefect UI: ")]
    # The current UI's page (`/v2`, where Prefect 3 logs in and comes back), not the old
    # UI's, which shows "Page not found" before login.
    assert address.startswith("Prefect UI: http://127.0.0.1:") and "/v2/runs/flow-run/" in address
    state = json.loads((tmp_path / "prefect" / "server.json").read_text())
    assert os.getsid(state["pid"]) != os.getsid(0)  # its own session: Ctrl-C never reaches it
    assert oct((tmp_path / "prefect").stat().st_mode & 0o777) == "0o700"
    # Only its owner gets in: Prefect's basic authentication, the string in a 0600 file.
    auth_file = tmp_path / "prefect" / "auth"
    assert oct(auth_file.stat().st_mode & 0o777) == "0o600"
    api = f"http://127.0.0.1:{state['port']}/api/flow_runs/filter"
    assert _post(api, None) == 401
    assert _post(api, auth_file.read_text().strip()) == 200

    status = dmflow("server", "status", env=env).stdout
    assert f"pid {state['pid']}" in status and "database sqlite" in status
    assert f"API http://127.0.0.1:{state['port']}/api" in status
    assert 'eval "$(dmflow server env)"' in status
    run_id = json.loads(dmflow("runs", "--json", env=env).stdout)[0]["id"]
    again = dmflow("recover", run_id, env=env, timeout=300)  # trains it, on the same server
    assert again.returncode == 0, again.stderr[-3000:]
    assert "starting the embedded Prefect server" not in again.stderr
    assert json.loads((tmp_path / "prefect" / "server.json").read_text())["pid"] == state["pid"]

    _prefect_cli_from_a_fresh_shell(env, tmp_path, auth_file.read_text().strip())

    stopped = dmflow("server", "stop", env=env)
    assert stopped.returncode == 0 and "prefect   stopped" in stopped.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(state["pid"], 0)


def _prefect_cli_from_a_fresh_shell(env: dict[str, str], tmp_path: Path, secret: str) -> None:
    """A script in a new shell: `eval "$(dmflow server env)"`, then the prefect CLI runs a
    deployment that `dmflow serve` serves from the embedded server. The secret is read
    from its file when the line runs: it is never printed."""
    lines = subprocess.run(
        [DMFLOW, "server", "env"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert secret not in lines and "export PREFECT_API_URL=http://127.0.0.1:" in lines
    fresh = {
        "PATH": f"{Path(DMFLOW).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "DMFLOW_DATA_DIR": env["DMFLOW_DATA_DIR"],
        "DMFLOW_DATABASE_URL": env["DMFLOW_DATABASE_URL"],
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    script = (
        'eval "$(dmflow server env)" && '
        "prefect deployment run recover-failed-runs/recover-failed-runs --watch"
    )
    with dmflow_serve(env, tmp_path / "serve.log", ROOT) as serving:
        deadline = time.monotonic() + 90
        while True:  # the served deployments appear a few seconds after the start
            ran = subprocess.run(
                ["bash", "-c", script], env=fresh, capture_output=True, text=True, timeout=180
            )
            if "not found" not in (ran.stdout + ran.stderr).lower():
                break
            assert time.monotonic() < deadline, ran.stdout + ran.stderr
            time.sleep(1)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "Completed" in ran.stdout
        serving.send_signal(signal.SIGINT)  # a terminal's Ctrl-C
        serving.wait(30)
    said = (tmp_path / "serve.log").read_text()
    assert 'prefect CLI: eval "$(dmflow server env)"' in said
    assert "the deployments are paused" in said and "`dmflow serve` runs again" in said
