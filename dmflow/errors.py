"""dmflow's exceptions. Each message says what happened and what to do next."""

from __future__ import annotations

from uuid import UUID

SHORT_ID = 8
"""Characters of a run id shown to people and put in commands (like git's short hashes;
every command takes a unique prefix of 6 or more). Here, not in `run_ids`, because these
errors' messages need it and `run_ids` needs these errors."""


class DmflowError(Exception):
    """Base class: an error dmflow can explain to the person running it."""


class ConfigurationError(DmflowError):
    """Settings are missing or wrong; the message lists what to set."""


class DatabaseUnavailable(DmflowError):
    """The database could not be reached or started."""


class DatabaseRefused(DmflowError):
    """The database refused a statement (its class and primary message, nothing more)."""


class RunNotFound(DmflowError):
    def __init__(self, run_id: UUID | str) -> None:
        self.run_id = str(run_id)
        super().__init__(
            f"training run {self.run_id} does not exist; `dmflow runs` lists the runs there are"
        )


class RunBlocked(DmflowError):
    """A dataset already has an unfinished run."""

    def __init__(self, dataset: str, run_id: UUID | str, status: str) -> None:
        self.dataset = dataset
        self.run_id = str(run_id)
        self.status = status
        ref = self.run_id[:SHORT_ID]
        if status.endswith("_failed"):
            advice = (
                f"recover it with `dmflow recover {ref}` or delete it with `dmflow delete {ref}`"
            )
        else:
            advice = (
                f"wait for it to finish (`dmflow show {ref}`); if its process died, "
                f"`dmflow recover {ref}` resumes it once it is marked failed"
            )
        super().__init__(
            f"dataset {dataset!r} already has an unfinished training run {self.run_id} "
            f"(status {status}): {advice}, then start a new run"
        )


class InvalidTransition(DmflowError):
    def __init__(self, from_status: str, to_status: str) -> None:
        self.from_status = from_status
        self.to_status = to_status
        super().__init__(f"a training run cannot go from {from_status} to {to_status}")


class ConcurrentUpdate(DmflowError):
    """The compare-and-set lost: someone else changed the run first."""

    def __init__(
        self, run_id: UUID | str, status: str | None = None, attempt: int | None = None
    ) -> None:
        self.run_id = str(run_id)
        self.status = status
        self.attempt = attempt
        now = f" (it is now {status} at attempt {attempt})" if status is not None else ""
        super().__init__(
            f"training run {self.run_id} was changed by someone else{now}; it may already be "
            f"being recovered: check `dmflow show {self.run_id[:SHORT_ID]}` before trying again"
        )


class RunNotDeletable(DmflowError):
    def __init__(self, run_id: UUID | str, status: str) -> None:
        self.run_id = str(run_id)
        self.status = status
        super().__init__(
            f"training run {self.run_id} is {status}; only failed runs "
            "(generating_failed, training_failed) can be deleted"
        )


class InvalidBatch(DmflowError):
    """A batch of generation results was refused as a whole; nothing was written."""


class RunStillActive(DmflowError):
    """Recovery refused: the run is being worked on right now."""

    def __init__(self, run_id: UUID | str, status: str, liveness: str) -> None:
        self.run_id = str(run_id)
        self.status = status
        super().__init__(
            f"training run {self.run_id} is {status} and not known dead: {liveness}. "
            f"Follow it with `dmflow show {self.run_id}`; once its driver is gone the sweep "
            "marks it failed and it can be recovered"
        )
