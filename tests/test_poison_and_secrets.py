"""Poison input never fails a run; no secret and no document text leaves in an error."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from pydantic import SecretStr

from dmflow.errors import DatabaseRefused
from dmflow.generation.cleaning import clean_questions
from dmflow.models import ChunkOutcome, ChunkResult
from dmflow.redaction import describe, scrub
from dmflow.status import RunStatus
from dmflow.store.base import record_or_skip_unstorable
from dmflow.store.postgres import PostgresRunStore
from dmflow.testing.asking import ask
from flows.generation import generate_training_data
from tests.fixtures.cli import CliRunner, clean_env
from tests.fixtures.datasets import MakeDataset
from tests.fixtures.llm_server import LLMServer, Reply
from tests.fixtures.postgres import Database

SECRET = "S3cretPW"
MALFORMED_URLS = [
    f"postgres//app:{SECRET}@127.0.0.1/db",  # the issue's: a missing colon
    f"postgresql://app:{SECRET}@127.0.0.1:notaport/db",
    f"postgresql://app:{SECRET}@[::1:5432/db",
    f"postgresql://app:{SECRET}@127.0.0.1:1/db",  # well formed, closed port
    f"postgresql://app:{SECRET}@/db?host=/nonexistent",
    f"postgresql://:{SECRET}@127.0.0.1:1/db",
    f"host=127.0.0.1 port=1 user=app password={SECRET} dbname=db",
    f"host=127.0.0.1 password='{SECRET}' port=x",
    f"app:{SECRET}@127.0.0.1/db",
]


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlLXNlY3JldA"


@pytest.mark.parametrize(
    "text",
    [*MALFORMED_URLS, "key sk-proj-abcdefghijklmn0123 refused", f"apikey {JWT} is invalid"],
)
def test_scrub_removes_passwords_and_keys(text: str) -> None:
    cleaned = scrub(text)
    assert SECRET not in cleaned and "sk-proj" not in cleaned and JWT not in cleaned, cleaned


def test_scrub_keeps_an_ordinary_message() -> None:
    message = "could not connect to 127.0.0.1:5432: connection refused; check the port"
    assert scrub(message) == message


# From the second security review: libpq quotes these passwords back in its own words
# (`unexpected spaces found in "..."`), so only their value, remembered from the
# settings, finds them.
QUOTED_BACK_URLS = [
    f"postgresql://u:{SECRET}@[bad/db",
    SECRET,
    f"postgresql://u:SEC%ZZ{SECRET}@127.0.0.1:1/db",
    f"postgresql://u:SEC {SECRET}@127.0.0.1:1/db",
    f"postgres//u:{SECRET} X@127.0.0.1:1/db",
]


@pytest.mark.parametrize(
    ("command", "url"),
    [("runs", url) for url in MALFORMED_URLS + QUOTED_BACK_URLS]
    + [("migrate", url) for url in QUOTED_BACK_URLS],
)
def test_a_bad_database_url_is_one_line_without_its_password(
    dmflow: CliRunner, command: str, url: str
) -> None:
    result = dmflow(command, env=clean_env(DMFLOW_DATABASE_URL=url), timeout=60)
    assert result.returncode == 1, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "DMFLOW_DATABASE_URL" in result.stderr


def test_verbose_output_does_not_carry_the_password_either(
    dmflow: CliRunner, tmp_path: Path
) -> None:
    env = clean_env(DMFLOW_DATABASE_URL=MALFORMED_URLS[0])
    result = dmflow("run", str(tmp_path), "--verbose", env=env, timeout=60)
    assert result.returncode == 1, result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_a_database_refusal_names_its_class_not_the_row(store: PostgresRunStore) -> None:
    run = store.create_run("ds")
    document = "secret plans of the company"
    poisoned = ChunkResult.model_construct(
        chunk_id="c1",
        outcome=ChunkOutcome.DONE,
        questions=("What are the plans?",),
        chunk_preview=f"{document}\x00",
    )
    with pytest.raises(DatabaseRefused) as refused:
        store.record_batch(run, [poisoned])
    assert document not in str(refused.value) and "CONTEXT" not in str(refused.value)
    assert document not in describe(refused.value)


def test_an_unstorable_chunk_is_skipped_with_its_reason_and_the_rest_recorded(
    store: PostgresRunStore, db: Database
) -> None:
    run = store.create_run("ds")
    good = [ChunkResult.done(f"g{n}", [f"What is g{n} about?"], f"g{n}") for n in range(3)]
    poisoned = ChunkResult.model_construct(
        chunk_id="bad",
        outcome=ChunkOutcome.DONE,
        questions=("What is bad?",),
        chunk_preview="bad\x00",
    )
    after = record_or_skip_unstorable(
        store, run, [good[0], poisoned, *good[1:]], {"requests": 4}, None
    )
    assert after.processed_chunks == 4 and after.pair_count == 3
    assert after.usage.requests == 4
    [(outcome, reason)] = db.execute(
        "select outcome, reason from deep_memory_training_chunks where chunk_id = 'bad'"
    )
    assert outcome == "skipped" and reason.startswith("could not be stored")


def test_nul_and_lone_surrogates_never_reach_the_database() -> None:
    result = ChunkResult.done("id\x00-1", ["What is \ud800this\x00?"], "text\x00 \udcff here")
    assert result.chunk_id == "id-1"
    assert result.questions == ("What is this?",)
    assert result.chunk_preview == "text  here"


def test_nul_in_documents_and_surrogates_in_llm_output_never_fail_a_run(
    flow_env: dict[str, str],
    store: PostgresRunStore,
    make_dataset: MakeDataset,
    llm_server: LLMServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [
        (f"c{n}", f"Chapter {n} explains how the reactor cooling loop keeps pressure stable")
        for n in range(20)
    ]
    rows[3] = ("c3\x00", "The valve\x00 manual describes pressure relief settings for the loop")
    dataset = make_dataset(rows)

    def poisoned(text: str, attempt: int) -> Reply:
        questions = [
            "What does the \x00valve manual say about the loop?",
            "How is \ud800pressure relieved?",
        ]
        return Reply(content=json.dumps(questions))

    llm_server.script = poisoned
    monkeypatch.setenv("DMFLOW_LLM_BASE_URL", llm_server.url)
    monkeypatch.setenv("DMFLOW_LLM_API_KEY", "sk-test")
    run = store.create_run(dataset, params={"generator": "openai"})
    asyncio.run(generate_training_data(run.id))
    done = store.get_run(run.id)
    assert done.status is RunStatus.GENERATED, done.error_message
    assert done.processed_chunks == 20 and done.pair_count == 40
    assert "c3" in store.recorded_chunk_ids(run.id)


def test_questions_with_markup_are_dropped_and_counted() -> None:
    dropped: Counter[str] = Counter()
    kept = clean_questions(
        [
            "<img src=x onerror=alert(1)> what is this?",
            "What does <script>fetch('//evil')</script> do?",
            "Why is [link](javascript:alert(1)) shown?",
            # What the block list let through (the second security review):
            "What is <image src=x onerror=alert(1)> here?",
            'Where does <area href="jav&#x61;script:alert(1)"> lead?',
            'Why is style="background:url(https://evil/x)" used?',
            "What does <table background=//evil/x> show?",
            "Which <portal src=//evil> opens?",
            "What does <applet code=x> run?",
            "Why is ![x](https://evil/pixel.png) loaded?",
            "Where is https://evil.example/track linked?",
            "What hides in this\u200b sentence?",
            "What does the expression a < b > c mean in Python?",
            "How does the cooling loop keep pressure stable?",
            "What does `str.join` return for R&D teams, in €?",
        ],
        "The cooling loop keeps pressure stable; in Python the expression a < b > c chains "
        "comparisons, and str.join returns one string.",
        limit=20,
        dropped=dropped,
    )
    assert kept == [
        "What does the expression a < b > c mean in Python?",
        "How does the cooling loop keep pressure stable?",
        "What does `str.join` return for R&D teams, in €?",
    ]
    assert dropped["markup"] == 12


ROOT = Path(__file__).resolve().parent.parent
NO_NETWORK = ROOT / "tests" / "fixtures" / "no_network"
FROM_PLAIN_PYTHON = (
    "import asyncio, sys; from flows.training_run import training_run; "
    "print(asyncio.run(training_run(dataset=sys.argv[1])).status.value)"
)


def test_a_whole_offline_run_from_plain_python_connects_to_nothing_outside(
    db: Database, sample_dataset: str, tmp_path: Path
) -> None:
    """No CLI, no PREFECT_API_URL: Prefect starts its temporary server, deeplake is
    imported, the local trainer trains; nothing looks up or reaches another host."""
    network_log = tmp_path / "network.log"
    (tmp_path / "home").mkdir()  # a fresh user's home
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DMFLOW_", "PREFECT_")) and k != "BUGGER_OFF"
    }
    env.update(
        DMFLOW_DATABASE_URL=db.url,
        DMFLOW_DATA_DIR=str(tmp_path / "data"),
        DMFLOW_NETWORK_LOG=str(network_log),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        HOME=str(tmp_path / "home"),  # deeplake's consent file: a fresh user
        PYTHONPATH=os.pathsep.join([str(NO_NETWORK), str(ROOT)]),
    )
    done = subprocess.run(
        [sys.executable, "-c", FROM_PLAIN_PYTHON, sample_dataset],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "completed"
    assert not network_log.exists(), network_log.read_text()
    consent = json.loads((tmp_path / "home" / ".activeloop" / "reporting_config.json").read_text())
    assert consent["consent"] is False


def test_tracebacks_never_show_local_variables() -> None:
    from flows.cli import app, server_app

    assert app.pretty_exceptions_show_locals is False
    assert server_app.pretty_exceptions_show_locals is False


def test_an_endpoint_echoing_the_key_leaves_it_out_of_the_skip_reason(
    llm_server: LLMServer,
) -> None:
    from dmflow.chunks import Chunk
    from dmflow.generation.openai_compatible import OpenAIGeneratorConfig, OpenAIQuestionGenerator

    key = "sk-live-abcdef1234567890"

    def echoes_the_key(text: str, attempt: int) -> Reply:
        body = {"error": {"message": f"upstream refused key {key}", "type": "server_error"}}
        return Reply(500, json.dumps(body))

    llm_server.script = echoes_the_key
    config = OpenAIGeneratorConfig(
        model="m",
        api_key=SecretStr(key),
        base_url=llm_server.url,
        max_attempts=2,
        backoff_base_s=0.01,
        outage_wait_s=0.5,
    )
    one = asyncio.run(ask(OpenAIQuestionGenerator(config), [Chunk("c1", "some text about valves")]))
    assert [c.id for c in one.unanswered] == ["c1"]  # a transport failure: asked again later
    chunks = [Chunk(f"c{n}", f"some text about valves {n}") for n in range(6)]
    with pytest.raises(Exception) as failed:  # every request failed: the endpoint is down
        asyncio.run(ask(OpenAIQuestionGenerator(config), chunks))
    assert key not in str(failed.value)
    assert "***" in str(failed.value)


def test_a_supabase_error_does_not_carry_the_key() -> None:
    from dmflow.store.supabase import SupabaseRunStore

    with pytest.raises(Exception) as failed:
        SupabaseRunStore("http://127.0.0.1:1", SecretStr(JWT)).list_runs()
    assert JWT not in str(failed.value) and JWT not in repr(failed.value)


def test_prefect_s_client_telemetry_is_off_in_every_dmflow_process() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK", "CI")}
    probe = (
        "import flows; from prefect._internal.analytics.enabled import is_telemetry_enabled;"
        "print(is_telemetry_enabled())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.stdout.strip() == "False", done.stderr[-2000:]


@pytest.mark.parametrize("home", ["missing", "fresh"])
def test_deeplake_s_import_looks_nothing_up_and_creates_no_home(tmp_path: Path, home: str) -> None:
    network_log = tmp_path / "network.log"
    home_dir = tmp_path / "home"
    if home == "fresh":
        home_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMFLOW_")}
    env.update(
        HOME=str(home_dir),
        DMFLOW_NETWORK_LOG=str(network_log),
        PYTHONPATH=os.pathsep.join([str(NO_NETWORK), str(ROOT)]),
    )
    probe = "from dmflow.deeplake_support import import_deeplake; import_deeplake()"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not network_log.exists(), network_log.read_text()  # no PyPI version lookup
    assert home_dir.exists() is (home == "fresh")


def test_a_supabase_endpoint_echoing_the_key_leaves_it_out_of_the_error() -> None:
    import httpx

    from dmflow.settings import Settings
    from dmflow.store.supabase import SupabaseRunStore

    def echo(request: httpx.Request) -> httpx.Response:
        # A misconfigured proxy in front of PostgREST that quotes what it was sent.
        said = f"bad credentials {request.headers['apikey']} ({request.headers['authorization']})"
        return httpx.Response(400, json={"code": "PGRST000", "message": said, "details": said})

    settings = Settings(supabase_url="http://127.0.0.1:1", supabase_key=SecretStr(JWT))
    assert settings.supabase_key is not None
    store = SupabaseRunStore(
        "http://127.0.0.1:1",
        settings.supabase_key,
        http_client=httpx.Client(transport=httpx.MockTransport(echo)),
    )
    with pytest.raises(DatabaseRefused) as failed:
        store.list_runs()
    text = f"{failed.value} {failed.value!r} {failed.value.__dict__}"
    assert JWT not in text and "***" in text
