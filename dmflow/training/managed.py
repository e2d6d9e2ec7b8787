"""Deep Memory on Activeloop's managed service, through deeplake 3.9's own client.

What its source taught us, and what this adapter does about it:
- `DeepMemory.train()` overwrites `<corpus>_queries`: two jobs of one corpus
  must never overlap, so a submission first ends any job still running on it;
- `DeepMemory.status()` prints and returns None: status is read through the
  client's request API instead;
- the client retries connection errors forever and waits up to 170 s per
  request: every call here runs under a hard deadline;
- its telemetry would carry the queries: `import_deeplake()` switches it off;
- relevance must be `(id, int)` tuples.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import requests
from pydantic import SecretStr

from dmflow.deadline import DeadlineExceeded, run_with_deadline
from dmflow.deeplake_support import import_deeplake, keep_telemetry_off, point_at_activeloop
from dmflow.models import TrainingPair
from dmflow.redaction import describe, scrub
from dmflow.settings import Settings
from dmflow.training.base import JobState, JobStatus, TrainerUnavailable, TrainingError
from dmflow.training.corpus import QuestionEmbedder, open_dataset

T = TypeVar("T")

logger = logging.getLogger(__name__)

_STATES = {state.value: state for state in JobState}


def within_deadline(seconds: float, what: str, call: Callable[[], T]) -> T:
    """`call()` under a hard deadline, its errors said in dmflow's terms."""
    try:
        return run_with_deadline(seconds, what, call)
    except DeadlineExceeded as exc:
        raise TrainerUnavailable(str(exc)) from None
    except BaseException as exc:
        raise _translated(exc, what) from None


def _translated(error: BaseException, what: str) -> BaseException:
    from deeplake.util import exceptions as dl

    if isinstance(error, TrainingError):
        return error
    if isinstance(error, dl.AuthenticationException):
        return TrainingError(
            f"{what}: Activeloop rejected the token (401): set DMFLOW_ACTIVELOOP_TOKEN to a "
            "valid API token from app.activeloop.ai"
        )
    if isinstance(error, dl.DeepMemoryAccessError):
        return TrainingError(
            f"{what}: Deep Memory is not available for this organisation's plan: upgrade it "
            "on app.activeloop.ai, or train with trainer=local"
        )
    if isinstance(error, dl.AuthorizationException):
        return TrainingError(
            f"{what}: Activeloop refused access (403): {scrub(str(error.original_message))}"
        )
    if isinstance(error, dl.ResourceNotFoundException):
        return TrainingError(f"{what}: not found on Activeloop: {scrub(str(error))}")
    if isinstance(error, dl.BadRequestException):
        return TrainingError(f"{what}: Activeloop refused the request: {scrub(str(error))}")
    server_side = (
        dl.ServerException,
        dl.BadGatewayException,
        dl.GatewayTimeoutException,
        dl.OverLimitException,
        requests.exceptions.RequestException,
    )
    if isinstance(error, server_side):
        return TrainerUnavailable(f"{what}: {describe(error)}")
    if type(error).__module__.split(".")[0] in ("deeplake", "requests", "urllib3"):
        # Never deeplake's or requests' own error: it may hold the request, headers (the
        # token) included, and Prefect would pickle it into its result storage.
        return TrainingError(f"{what}: {describe(error)}")
    return error


def relevance_lists(pairs: Sequence[TrainingPair]) -> tuple[list[str], list[list[tuple[str, int]]]]:
    """One query per distinct question, with every chunk it was generated from."""
    grouped: dict[str, list[tuple[str, int]]] = {}
    for pair in pairs:
        if pair.relevance_score > 0:
            chunks = grouped.setdefault(pair.question_text, [])
            if (pair.chunk_id, 1) not in chunks:
                chunks.append((pair.chunk_id, 1))
    return list(grouped), list(grouped.values())


class ManagedDeepMemoryTrainer:
    name = "managed"

    default_poll_intervals_s = (5.0, 10.0, 30.0)

    def __init__(self, settings: Settings, *, embedder: str | None = None) -> None:
        self.settings = settings
        self.questions = QuestionEmbedder(embedder, settings)
        self._backend: Any = None
        import_deeplake()
        if settings.activeloop_endpoint:
            point_at_activeloop(settings.activeloop_endpoint)

    # -- the trainer protocol ---------------------------------------------------

    def preflight(self, dataset: str) -> str:
        if not dataset.startswith("hub://"):
            raise TrainingError(
                f"the managed trainer trains Activeloop datasets (hub://org/name), and {dataset} "
                "is not one: use trainer=local for a local dataset"
            )
        org = dataset.removeprefix("hub://").split("/", 1)[0]
        client = self._client()  # refuses a missing or rejected token
        available = self._call(
            "checking Deep Memory for the organisation",
            lambda: client.request("GET", f"/api/organizations/{org}/features/deepmemory").json(),
        )
        if not available.get("available"):
            raise TrainingError(
                f"organisation {org!r} has no Deep Memory on its Activeloop plan: upgrade it on "
                "app.activeloop.ai, or train with trainer=local"
            )
        return self.questions.checked(self._open(dataset), dataset).name

    def baseline(self, dataset: str, eval_pairs: Sequence[TrainingPair]) -> dict[str, Any]:
        return self.questions.corpus(self._open(dataset), dataset).baseline(eval_pairs)

    def submit(
        self,
        dataset: str,
        train_pairs: Sequence[TrainingPair],
        eval_pairs: Sequence[TrainingPair],
    ) -> str:
        from deeplake.core.vectorstore.deep_memory.deep_memory import DeepMemory

        queries, relevance = relevance_lists(train_pairs)
        if not queries:
            raise TrainingError("there are no training pairs: generate some first")
        token = self._token()
        self._end_running_jobs(dataset)
        corpus = self._open(dataset)
        embedder = self.questions.checked(corpus, dataset)

        def train() -> str:
            deep_memory = DeepMemory(
                corpus,
                dataset,
                logger,
                embedding_function=embedder.embed,
                token=token.get_secret_value(),
            )
            return str(deep_memory.train(queries=queries, relevance=relevance))

        return within_deadline(
            self.settings.activeloop_submit_deadline_s, "starting the Deep Memory job", train
        )

    def status(self, job_id: str) -> JobStatus:
        client = self._client()
        payload = self._call(
            f"reading job {job_id}",
            lambda: client.request("GET", f"/api/deepmemory/v1/jobs/{job_id}/status").json(),
        )
        reported = str(payload.get("status", "unknown"))
        state = _STATES.get(reported, JobState.FAILED)
        error = payload.get("error") or payload.get("message")
        if state is JobState.FAILED and not error:
            error = f"the job ended as {reported!r}"
        progress = payload.get("progress")
        metrics: dict[str, Any] = {"trainer": self.name}
        if progress:
            metrics["service_progress"] = progress
        return JobStatus(
            job_id=job_id,
            state=state,
            progress=progress if isinstance(progress, (int, float)) else None,
            error=str(error) if error else None,
            metrics=metrics,
        )

    def cancel(self, job_id: str) -> None:
        client = self._client()
        self._call(
            f"cancelling job {job_id}",
            lambda: client.request("POST", f"/api/deepmemory/v1/jobs/{job_id}/cancel"),
        )

    # -- internals ----------------------------------------------------------------

    def _end_running_jobs(self, dataset: str) -> None:
        """Never two jobs on one corpus: the second would overwrite the first's queries."""
        client = self._client()
        org_and_name = dataset.removeprefix("hub://")
        jobs = self._call(
            f"listing the Deep Memory jobs of {dataset}",
            lambda: client.request("GET", f"/api/deepmemory/v1/{org_and_name}/jobs").json(),
        )
        running = [str(j["id"]) for j in jobs or [] if j.get("status") in ("pending", "training")]
        for job_id in running:
            logger.warning("cancelling Deep Memory job %s of %s before submitting", job_id, dataset)
            self.cancel(job_id)
        deadline = time.monotonic() + self.settings.activeloop_request_deadline_s
        for job_id in running:
            while self.status(job_id).state.is_running:
                if time.monotonic() > deadline:
                    raise TrainingError(
                        f"Deep Memory job {job_id} of {dataset} is still running after it was "
                        "cancelled: wait for it to end, then recover the run"
                    )
                time.sleep(2.0)

    def _open(self, dataset: str) -> Any:
        token = self._token()
        return self._call(f"opening {dataset}", lambda: open_dataset(dataset, token))

    def _token(self) -> SecretStr:
        if self.settings.activeloop_token is None:
            raise TrainingError(
                "the managed Deep Memory trainer needs an Activeloop token: set "
                "DMFLOW_ACTIVELOOP_TOKEN (app.activeloop.ai -> API tokens)"
            )
        return self.settings.activeloop_token

    def _client(self) -> Any:
        from deeplake.client.client import DeepMemoryBackendClient

        if self._backend is not None:
            return self._backend
        token = self._token().get_secret_value()
        client = self._call("signing in to Activeloop", lambda: DeepMemoryBackendClient(token))
        keep_telemetry_off()
        self._backend = client
        return client

    def _call(self, what: str, call: Callable[[], T]) -> T:
        return within_deadline(self.settings.activeloop_request_deadline_s, what, call)
