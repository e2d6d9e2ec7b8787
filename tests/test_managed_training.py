"""The managed (Activeloop) Deep Memory trainer: the real deeplake 3.9 client against a
local Activeloop backend on 127.0.0.1, real Postgres, real Prefect."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from dmflow.deeplake_support import import_deeplake
from dmflow.settings import Settings
from dmflow.status import RunStatus
from dmflow.store.postgres import PostgresRunStore
from dmflow.training.base import TrainingError
from dmflow.training.evaluation import split_by_chunk
from dmflow.training.managed import ManagedDeepMemoryTrainer, relevance_lists
from flows.recovery import recover_training_run
from flows.training import train_deep_memory
from flows.training_run import training_run
from tests.fixtures.activeloop_server import CORPUS, TOKEN, ActiveloopServer, JobScript
from tests.fixtures.postgres import Database
from tests.fixtures.processes import signal_and_wait, start_worker
from tests.test_training import generated_run


def trainer(**overrides: object) -> ManagedDeepMemoryTrainer:
    return ManagedDeepMemoryTrainer(Settings(**overrides))  # type: ignore[arg-type]


def queries_written(server: ActiveloopServer) -> int:
    deeplake = import_deeplake()
    path = server.storage / "testorg" / "corpus_queries"
    return len(deeplake.load(str(path), read_only=True, verbose=False))


def test_submit_poll_completed_through_the_parent_flow(
    managed_env: dict[str, str],
    activeloop_server: ActiveloopServer,
    store: PostgresRunStore,
    db: Database,
) -> None:
    activeloop_server.script = JobScript(polls_until_done=0)
    result = asyncio.run(training_run(CORPUS, trainer="managed", max_pairs=400))
    run = store.get_run(result.id)
    assert run.status is RunStatus.COMPLETED, run.error_message
    assert run.facts.embedder == "hashing-512" and "embedder" not in run.params
    assert activeloop_server.count("train") == 1
    assert run.deeplake_job_id in activeloop_server.jobs
    assert run.metrics is not None
    assert run.metrics.trainer == "managed"
    assert run.metrics.embedder == "hashing-512"
    assert 0 < run.metrics.before["recall@10"] <= 1
    assert run.metrics.eval_pairs > 0
    assert run.metrics.train_pairs + run.metrics.eval_pairs == run.pair_count == 400
    # The service read a queries dataset the real client wrote: one row per question.
    pairs = [pair for page in store.iter_pairs(run.id) for pair in page]
    questions, _ = relevance_lists(split_by_chunk(pairs)[0])
    assert queries_written(activeloop_server) == len(questions) > 0
    assert db.execute("select last_training_run_id from deep_memory_settings") == [(run.id,)]
    # deeplake's client turns telemetry consent on when it signs in: dmflow turns it off.
    config = Path("~/.activeloop/reporting_config.json").expanduser()
    assert json.loads(config.read_text())["consent"] is False


def test_relevance_is_id_int_tuples_one_query_per_question() -> None:
    from dmflow.models import TrainingPair

    pairs = [
        TrainingPair(question_text="q1", chunk_id="a"),
        TrainingPair(question_text="q1", chunk_id="b"),
        TrainingPair(question_text="q2", chunk_id="a", relevance_score=0.0),
        TrainingPair(question_text="q3", chunk_id="c"),
    ]
    assert relevance_lists(pairs) == (["q1", "q3"], [[("a", 1), ("b", 1)], [("c", 1)]])


def test_a_failed_job_marks_the_run_training_failed_then_recovery_resubmits(
    managed_env: dict[str, str], activeloop_server: ActiveloopServer, store: PostgresRunStore
) -> None:
    activeloop_server.script = JobScript(polls_until_done=1, outcome="failed")
    run = generated_run(store, CORPUS, trainer="managed", poll_intervals_s=[0.1], max_pairs=300)
    with pytest.raises(TrainingError, match="loss diverged"):
        asyncio.run(train_deep_memory(run.id))  # type: ignore[attr-defined]
    failed = store.get_run(run.id)  # type: ignore[attr-defined]
    assert failed.status is RunStatus.TRAINING_FAILED
    assert failed.error_message is not None and "loss diverged (nan) at step 40" in (
        failed.error_message
    )
    first_job = failed.deeplake_job_id
    assert first_job is not None

    activeloop_server.script = JobScript(polls_until_done=1)
    asyncio.run(recover_training_run(run.id))  # type: ignore[attr-defined]

    done = store.get_run(run.id)  # type: ignore[attr-defined]
    assert done.status is RunStatus.COMPLETED
    assert activeloop_server.count("train") == 2
    assert done.deeplake_job_id not in (None, first_job)


def test_a_job_still_training_past_the_timeout_is_cancelled(
    managed_env: dict[str, str], activeloop_server: ActiveloopServer, store: PostgresRunStore
) -> None:
    activeloop_server.script = JobScript(outcome="training")
    run = generated_run(
        store,
        CORPUS,
        trainer="managed",
        poll_intervals_s=[0.2],
        training_timeout_s=1.0,
        max_pairs=300,
    )
    with pytest.raises(TrainingError, match="still training after 1 s"):
        asyncio.run(train_deep_memory(run.id))  # type: ignore[attr-defined]
    failed = store.get_run(run.id)  # type: ignore[attr-defined]
    assert failed.status is RunStatus.TRAINING_FAILED
    assert activeloop_server.jobs[failed.deeplake_job_id].status == "cancelled"
    assert activeloop_server.count("cancel") == 1


def test_bursts_of_502_are_ridden_out(
    managed_env: dict[str, str], activeloop_server: ActiveloopServer, store: PostgresRunStore
) -> None:
    activeloop_server.script = JobScript(polls_until_done=1)
    run = generated_run(store, CORPUS, trainer="managed", poll_intervals_s=[0.1], max_pairs=300)
    # Four 502s: the client's own three tries, then one retry of dmflow's status task.
    activeloop_server.fail_next("status", 502, 502, 502, 502)
    asyncio.run(train_deep_memory(run.id))  # type: ignore[attr-defined]
    assert store.get_run(run.id).status is RunStatus.COMPLETED  # type: ignore[attr-defined]
    assert activeloop_server.count("train") == 1


def test_a_500_on_train_fails_the_run_and_recovery_submits_once_more(
    managed_env: dict[str, str], activeloop_server: ActiveloopServer, store: PostgresRunStore
) -> None:
    activeloop_server.script = JobScript(polls_until_done=0)
    run = generated_run(store, CORPUS, trainer="managed", poll_intervals_s=[0.1], max_pairs=300)
    activeloop_server.fail_next("train", 500)
    with pytest.raises(TrainingError, match="starting the Deep Memory job: ServerException"):
        asyncio.run(train_deep_memory(run.id))  # type: ignore[attr-defined]
    failed = store.get_run(run.id)  # type: ignore[attr-defined]
    assert (failed.status, failed.deeplake_job_id) == (RunStatus.TRAINING_FAILED, None)

    asyncio.run(recover_training_run(run.id))  # type: ignore[attr-defined]
    assert store.get_run(run.id).status is RunStatus.COMPLETED  # type: ignore[attr-defined]
    assert len(activeloop_server.jobs) == 1


def test_a_401_while_polling_says_the_token_was_rejected(
    managed_env: dict[str, str], activeloop_server: ActiveloopServer, store: PostgresRunStore
) -> None:
    activeloop_server.script = JobScript(outcome="training")
    run = generated_run(store, CORPUS, trainer="managed", poll_intervals_s=[0.1], max_pairs=300)

    def revoke_after_train() -> None:  # the token is revoked while the job trains
        while activeloop_server.count("train") == 0:
            time.sleep(0.02)
        activeloop_server.fail_next("status", *([401] * 20))

    threading.Thread(target=revoke_after_train, daemon=True).start()
    with pytest.raises(TrainingError, match="rejected the token"):
        asyncio.run(train_deep_memory(run.id))  # type: ignore[attr-defined]
    failed = store.get_run(run.id)  # type: ignore[attr-defined]
    assert failed.status is RunStatus.TRAINING_FAILED
    assert failed.error_message is not None and "DMFLOW_ACTIVELOOP_TOKEN" in failed.error_message
    assert TOKEN not in failed.error_message


def test_a_service_echoing_the_token_leaves_it_out_of_the_run(
    managed_env: dict[str, str], activeloop_server: ActiveloopServer, store: PostgresRunStore
) -> None:
    activeloop_server.script = JobScript(outcome="training")
    activeloop_server.echo_credentials = True
    run = generated_run(store, CORPUS, trainer="managed", poll_intervals_s=[0.1], max_pairs=300)

    def refuse_after_train() -> None:
        while activeloop_server.count("train") == 0:
            time.sleep(0.02)
        activeloop_server.fail_next("status", *([403] * 20))

    threading.Thread(target=refuse_after_train, daemon=True).start()
    with pytest.raises(TrainingError) as failed:
        asyncio.run(train_deep_memory(run.id))  # type: ignore[attr-defined]
    assert TOKEN not in f"{failed.value} {failed.value!r} {failed.value.__dict__}"
    stored = store.get_run(run.id)  # type: ignore[attr-defined]
    assert stored.status is RunStatus.TRAINING_FAILED
    assert stored.error_message is not None and TOKEN not in stored.error_message


def test_a_job_left_running_by_a_lost_submission_is_cancelled_before_a_new_one(
    managed_env: dict[str, str], activeloop_server: ActiveloopServer, sample_dataset: str
) -> None:
    from dmflow.models import TrainingPair

    pairs = [TrainingPair(question_text=f"question {n}", chunk_id="x") for n in range(3)]
    activeloop_server.script = JobScript(outcome="training")
    managed = trainer()
    orphan = managed.submit(CORPUS, pairs, [])  # its id never reached the database
    fresh = managed.submit(CORPUS, pairs, [])
    assert activeloop_server.jobs[orphan].status == "cancelled"
    assert activeloop_server.jobs[fresh].status in ("pending", "training")


@pytest.mark.parametrize(
    ("dataset", "settings", "message"),
    [
        ("/srv/data/corpus", {}, "trains Activeloop datasets"),
        (CORPUS, {"activeloop_token": None}, "set DMFLOW_ACTIVELOOP_TOKEN"),
        (CORPUS, {"activeloop_token": SecretStr("wrong")}, "rejected the token"),
        ("hub://plainorg/corpus", {}, "organisation 'plainorg' has no Deep Memory"),
        ("hub://testorg/missing", {}, "not found|no DeepLake dataset"),
        (CORPUS, {"embedder": "hashing-256"}, "256-d vectors but the dataset's embeddings"),
    ],
)
def test_preflight_errors(
    managed_env: dict[str, str],
    activeloop_server: ActiveloopServer,
    dataset: str,
    settings: dict[str, object],
    message: str,
) -> None:
    embedder = settings.pop("embedder", None)
    managed = ManagedDeepMemoryTrainer(
        Settings(**settings),  # type: ignore[arg-type]
        embedder=embedder,  # type: ignore[arg-type]
    )
    with pytest.raises(TrainingError, match=message):
        managed.preflight(dataset)
    assert activeloop_server.count("train") == 0


def test_a_preflight_error_ends_the_run_before_generation_spends_anything(
    managed_env: dict[str, str], activeloop_server: ActiveloopServer, store: PostgresRunStore
) -> None:
    with pytest.raises(TrainingError, match="organisation 'plainorg' has no Deep Memory"):
        asyncio.run(training_run("hub://plainorg/corpus", trainer="managed"))
    assert store.list_runs(dataset="hub://plainorg/corpus") == []
    assert activeloop_server.count("train") == 0


def test_killed_while_polling_then_resumed_reattaches_without_a_second_train(
    managed_env: dict[str, str],
    activeloop_server: ActiveloopServer,
    store: PostgresRunStore,
    db: Database,
) -> None:
    activeloop_server.script = JobScript(outcome="training")
    run = generated_run(store, CORPUS, trainer="managed", poll_intervals_s=[0.2], max_pairs=300)
    worker = start_worker(
        "tests.fixtures.training_worker",
        str(run.id),  # type: ignore[attr-defined]
        env=managed_env,
    )
    signal_and_wait(
        worker, lambda: activeloop_server.count("status") >= 3, "the job was polled", signal.SIGKILL
    )
    killed = store.get_run(run.id)  # type: ignore[attr-defined]
    assert killed.status is RunStatus.TRAINING  # no hook runs after SIGKILL
    job_id = killed.deeplake_job_id
    assert job_id in activeloop_server.jobs

    # The job finishes on the service while nobody watches; the run is found dead later.
    activeloop_server.jobs[job_id].script = JobScript(polls_until_done=0)
    db.execute("update deep_memory_training_runs set heartbeat_at = now() - interval '1 hour'")
    asyncio.run(recover_training_run(run.id))  # type: ignore[attr-defined]

    done = store.get_run(run.id)  # type: ignore[attr-defined]
    assert done.status is RunStatus.COMPLETED, done.error_message
    assert done.deeplake_job_id == job_id
    assert activeloop_server.count("train") == 1


def test_the_heartbeat_beats_between_status_checks(
    managed_env: dict[str, str],
    activeloop_server: ActiveloopServer,
    store: PostgresRunStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dmflow.phases.heartbeat

    monkeypatch.setattr(dmflow.phases.heartbeat, "HEARTBEAT_EVERY_S", 0.25)
    activeloop_server.script = JobScript(outcome="training")
    run = generated_run(
        store, CORPUS, trainer="managed", poll_intervals_s=[4.0], training_timeout_s=1.0
    )
    beats: set[object] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            seen = store.get_run(run.id)  # type: ignore[attr-defined]
            if seen.status is RunStatus.TRAINING:
                beats.add(seen.heartbeat_at)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with pytest.raises(TrainingError, match="still training"):
        asyncio.run(train_deep_memory(run.id))  # type: ignore[attr-defined]
    stop.set()
    watcher.join()
    assert activeloop_server.count("status") == 2  # two checks, 4 s apart
    assert len(beats) >= 8, sorted(map(str, beats))


def test_a_service_in_trouble_at_resume_is_never_answered_with_a_second_job(
    managed_env: dict[str, str], activeloop_server: ActiveloopServer, store: PostgresRunStore
) -> None:
    from dmflow.models import TrainingPair

    activeloop_server.script = JobScript(outcome="training")
    run = generated_run(store, CORPUS, trainer="managed", poll_intervals_s=[0.1], max_pairs=300)
    pairs = [TrainingPair(question_text="what is a decorator?", chunk_id="x")]
    job_id = trainer().submit(CORPUS, pairs, [])  # an earlier attempt's job, still training
    training = store.transition(store.get_run(run.id), RunStatus.TRAINING)  # type: ignore[attr-defined]
    store.update_progress(training, deeplake_job_id=job_id)
    activeloop_server.fail_next("status", 500)

    with pytest.raises(TrainingError, match="ServerException"):
        asyncio.run(train_deep_memory(run.id))  # type: ignore[attr-defined]
    failed = store.get_run(run.id)  # type: ignore[attr-defined]
    assert (failed.status, failed.deeplake_job_id) == (RunStatus.TRAINING_FAILED, job_id)
    assert activeloop_server.count("train") == 1
