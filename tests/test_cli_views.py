"""The CLI as people read it: `dmflow runs` at 80 columns, run id prefixes, the card."""

from __future__ import annotations

import socket
import subprocess
import uuid
from datetime import UTC, datetime

import pytest

from dmflow.models import ChunkResult
from dmflow.run_ids import AmbiguousRunId, id_range, parse_prefix, resolve_run
from dmflow.status import Phase, RunStatus
from dmflow.store.postgres import PostgresRunStore
from flows.cli.launcher import describe
from tests.fixtures.cli import CliRunner, clean_env
from tests.fixtures.llm_server import LLMServer, Reply
from tests.fixtures.postgres import Database

LONG = "/srv/teams/search/very/long/path/to/the/vector/stores/customer-support-articles"


def test_runs_fits_80_columns_with_short_ids(
    dmflow: CliRunner, db: Database, store: PostgresRunStore
) -> None:
    failed = store.create_run(LONG)
    failed = store.update_progress(failed, total_chunks=1313)
    failed = store.record_batch(
        failed, [ChunkResult.done(f"c{n}", [f"What is c{n}?"], "t") for n in range(448)]
    )
    failed = store.transition(failed, RunStatus.GENERATING_FAILED, error_message="boom")
    store.create_run("hub://org/docs")
    result = dmflow("runs", env=clean_env(DMFLOW_DATABASE_URL=db.url, COLUMNS="80"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    assert len(lines) == 3  # the header and one line per run: nothing wraps
    row = next(line for line in lines if str(failed.id)[:8] in line)
    assert str(failed.id) not in row  # the short id, like git
    assert "448/1313" in row and "generating_failed" in row and "ago" in row
    assert "…" in row and "support-articles" in row  # shortened from the left: its end stays
    assert "hub://org/docs" in result.stdout


def test_a_prefix_of_6_or_more_characters_finds_the_run(
    dmflow: CliRunner, db: Database, store: PostgresRunStore
) -> None:
    run = store.create_run("ds")
    env = clean_env(DMFLOW_DATABASE_URL=db.url)
    for typed in (str(run.id)[:6], str(run.id)[:8], str(run.id)):
        shown = dmflow("show", typed, "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        assert str(run.id) in shown.stdout
    short = dmflow("show", str(run.id)[:5], env=env)
    assert short.returncode == 2 and "at least 6" in short.stderr


def test_an_ambiguous_prefix_lists_the_matches(store: PostgresRunStore, db: Database) -> None:
    first, second = store.create_run("a"), store.create_run("b")
    shared = "0000ab"
    for run, suffix in ((first, "1"), (second, "2")):
        new_id = uuid.UUID(shared + suffix.rjust(26, "0"))
        db.execute("update deep_memory_training_runs set id = %s where id = %s", (new_id, run.id))
    with pytest.raises(AmbiguousRunId) as ambiguous:
        resolve_run(store, shared)
    assert "matches 2 runs" in str(ambiguous.value)
    assert resolve_run(store, shared + "0" * 25 + "1").dataset == "a"


def test_prefixes_map_to_id_ranges() -> None:
    low, high = id_range(parse_prefix("3F2A91"))
    assert str(low) == "3f2a9100-0000-0000-0000-000000000000"
    assert str(high) == "3f2a91ff-ffff-ffff-ffff-ffffffffffff"
    for bad in ("xyz123", "3f2a", "3f2a91c4-" + "0" * 40):
        with pytest.raises(ValueError):
            parse_prefix(bad)


def test_show_is_a_card_with_what_to_do_next(
    dmflow: CliRunner, db: Database, store: PostgresRunStore
) -> None:
    run = store.create_run("ds")
    run = store.record_batch(
        run, [ChunkResult.done("c1", ["What is c1?"], "t")], {"requests": 3, "cost_usd": 0.5}
    )
    run = store.transition(run, RunStatus.GENERATING_FAILED, error_message="boom: a bad key")
    result = dmflow("show", str(run.id)[:8], env=clean_env(DMFLOW_DATABASE_URL=db.url))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"run {run.id}" in out and "generating_failed" in out
    assert "3 requests" in out and "$0.5000" in out
    assert "boom: a bad key" in out and f"dmflow recover {str(run.id)[:8]}" in out
    assert "{" not in out  # no raw JSON


def test_the_share_of_unusable_replies_shows_in_the_status_line_and_the_card(
    dmflow: CliRunner, db: Database, store: PostgresRunStore
) -> None:
    run = store.create_run("ds")
    run = store.update_progress(run, total_chunks=1313)
    assert describe(run) == "generating questions: 0/1313 chunks, 0 pairs"
    run = store.record_batch(
        run,
        [ChunkResult.done("c1", ["What is c1?"], "t")],
        {"requests": 60, "replies": 60, "replies_unusable": 45},
    )
    line = describe(run)
    assert line == "generating questions: 1/1313 chunks, 1 pairs, 75 % of replies unusable"
    assert len(line) + 2 <= 80  # with the spinner
    shown = dmflow("show", str(run.id)[:8], env=clean_env(DMFLOW_DATABASE_URL=db.url))
    assert shown.returncode == 0, shown.stderr
    assert "75 % of replies unusable" in shown.stdout


def test_a_run_whose_driver_is_gone_is_shown_as_dead_without_writing(
    dmflow: CliRunner, db: Database, store: PostgresRunStore
) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process that ran on this host and is gone: a killed driver
    run = store.create_run("ds-dead")
    run = store.enter_phase(
        run.id,
        Phase.GENERATION,
        attempt=run.attempt,
        flow_run_id=None,
        lease=(socket.gethostname(), gone.pid, datetime.now(UTC)),
    )
    env = clean_env(DMFLOW_DATABASE_URL=db.url, COLUMNS="80")
    ref = str(run.id)[:8]

    listed = dmflow("runs", env=env)
    shown = dmflow("show", ref, env=env)

    assert listed.returncode == 0 and shown.returncode == 0, listed.stderr + shown.stderr
    assert "generating, dead" in listed.stdout
    assert f"{ref} is generating but nothing drives it any more" in listed.stdout
    assert "generating, dead" in shown.stdout
    assert f"process {gone.pid}" in shown.stdout and "is gone" in shown.stdout
    assert f"dmflow recover {ref}" in shown.stdout
    assert "dmflow delete" not in shown.stdout  # refused for a run that is not failed
    assert store.get_run(run.id) == run


def test_an_error_with_rich_markup_in_it_is_printed_as_text(
    dmflow: CliRunner, flow_env: dict[str, str], sample_dataset: str, llm_server: LLMServer
) -> None:
    # The endpoint's words reach the run's error: `[/red]` there once crashed the CLI's
    # last line (Rich read it as a closing tag).
    body = '{"error": {"message": "[/red] I am a [bold]teapot"}}'
    llm_server.script = lambda text, attempt: Reply(418, body)
    env = clean_env(
        **flow_env, DMFLOW_LLM_BASE_URL=llm_server.url, DMFLOW_LLM_API_KEY="sk-test-key"
    )
    result = dmflow("run", sample_dataset, "--generator", "openai", "--no-train", env=env)
    assert result.returncode == 1, result.stderr
    assert "[/red] I am a [bold]teapot" in result.stderr
    assert "MarkupError" not in result.stderr and "Traceback" not in result.stderr
