"""An endpoint that echoes the key leaves it nowhere: not in a message, a log record, an
artifact, an event, a ledger reason, Prefect's result storage, or either database.

Each run is the whole product as a user starts it (`dmflow run`, embedded PostgreSQL,
embedded Prefect server, a fresh HOME), then every byte it wrote is searched."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest

from dmflow.database import embedded_database_dir
from dmflow.db.local_postgres import LocalPostgres
from dmflow.redaction import remember_secret, scrub
from dmflow.settings import Settings
from tests.fixtures.cli import CliRunner, clean_env
from tests.fixtures.llm_server import LLMServer, Reply, valid_json

# A key of no known shape (not sk-, not a JWT, not sb_): only its value can find it.
KEY = "gsk_" + secrets.token_hex(16)


def files_holding(root: Path, needle: bytes) -> list[str]:
    return [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes()
    ]


def echoing(status: int, after: int) -> object:
    """Answers the first `after` requests, then `status` with the key in its words."""
    seen = {"n": 0}

    def script(text: str, attempt: int) -> Reply:
        seen["n"] += 1
        if seen["n"] <= after:
            return valid_json(text, attempt)
        body = {"error": {"message": f"invalid request for key {KEY} (Bearer {KEY})"}}
        return Reply(status, json.dumps(body))

    return script


@pytest.mark.parametrize(
    ("status", "ends"),
    [(418, "generating_failed"), (422, "generated")],
    ids=["unmapped-status-fails-the-phase", "refused-request-skips-the-chunk"],
)
def test_an_endpoint_echoing_the_key_leaves_it_nowhere(
    dmflow: CliRunner,
    llm_server: LLMServer,
    sample_dataset: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    status: int,
    ends: str,
) -> None:
    cluster = embedded_database_dir(Settings(data_dir=tmp_path / "data"))
    request.addfinalizer(lambda: LocalPostgres(cluster).stop())
    llm_server.script = echoing(status, after=40)  # type: ignore[assignment]
    home = tmp_path / "home"
    home.mkdir(mode=0o700)  # a user's HOME: Prefect keeps its result storage there
    env = clean_env(
        DMFLOW_DATA_DIR=str(tmp_path / "data"),
        DMFLOW_LLM_BASE_URL=llm_server.url,
        DMFLOW_LLM_API_KEY=KEY,
        DMFLOW_LLM_MAX_ATTEMPTS="2",
        HOME=str(home),
    )
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)
    # The run starts the data directory's Prefect server: it must not outlive the test.
    request.addfinalizer(lambda: dmflow("server", "stop", env=env))
    result = dmflow(
        "run", sample_dataset, "--generator", "openai", "--no-train", env=env, timeout=300
    )
    assert (result.returncode == 0) is (ends == "generated"), result.stderr[-2000:]
    shown = dmflow("runs", env=env)
    assert ends in shown.stdout
    for output in (result.stdout, result.stderr, shown.stdout, shown.stderr):
        assert KEY not in output
    # Everything written: both databases' files (the embedded PostgreSQL's heap, the
    # Prefect server's SQLite with its logs, states, artifacts and events), Prefect's
    # result storage under ~/.prefect, deeplake's and dmflow's own files.
    assert files_holding(tmp_path / "data", KEY.encode()) == []
    assert files_holding(home, KEY.encode()) == []
    # The embedded PostgreSQL's own files (its tables and WAL), wherever they live: as
    # root they sit under /var/lib/dmflow when `postgres` cannot reach the data dir.
    assert any(cluster.rglob("pg_wal/*"))
    assert files_holding(cluster, KEY.encode()) == []
    if ends == "generating_failed":  # Prefect did store the failure there
        assert any((home / ".prefect" / "storage").rglob("*"))


def test_a_remembered_secret_is_scrubbed_in_its_encoded_forms() -> None:
    secret = "pa ss/wörd%" + secrets.token_hex(4)
    remember_secret(secret)
    from urllib.parse import quote

    for form in (secret, quote(secret, safe="")):
        assert "***" in scrub(f"could not connect with {form} to the server")
        assert form not in scrub(f"could not connect with {form} to the server")


def test_a_log_record_is_scrubbed_whatever_its_logger_and_format(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import dmflow  # noqa: F401  (installs the record factory, as every dmflow process)

    remember_secret(KEY)
    logger = logging.getLogger("some.library")
    with caplog.at_level(logging.INFO, logger="some.library"):
        logger.info("sent %d requests with %s", 3, f"Bearer {KEY}")
        logger.info("mapping %(key)s", {"key": KEY})
        try:
            raise ValueError(f"refused {KEY}")
        except ValueError:
            logger.exception("failed")
    text = caplog.text
    assert KEY not in text
    assert "sent 3 requests with Bearer ***" in text and "mapping ***" in text
    assert "ValueError: refused ***" in text
