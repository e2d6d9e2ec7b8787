"""Run statuses and the one table of allowed transitions."""

from __future__ import annotations

from enum import StrEnum

from dmflow.errors import InvalidTransition


class Phase(StrEnum):
    GENERATION = "generation"
    TRAINING = "training"


class RunStatus(StrEnum):
    GENERATING = "generating"
    GENERATED = "generated"
    TRAINING = "training"
    COMPLETED = "completed"
    GENERATING_FAILED = "generating_failed"
    TRAINING_FAILED = "training_failed"

    @property
    def is_failed(self) -> bool:
        return self in _FAILED

    @property
    def is_active(self) -> bool:
        """Work is (supposed to be) running and refreshing the heartbeat."""
        return self in _ACTIVE

    @property
    def is_terminal(self) -> bool:
        """Nothing happens to the run without someone acting: completed or failed.

        A dashboard can stop listening for updates at a terminal status.
        """
        return self is RunStatus.COMPLETED or self.is_failed

    @property
    def is_unfinished(self) -> bool:
        """Counts against the one-unfinished-run-per-dataset rule."""
        return self is not RunStatus.COMPLETED

    @property
    def phase(self) -> Phase:
        """The phase the status belongs to; `generated` closes generation."""
        return _PHASE[self]

    @staticmethod
    def failed_status_of(phase: Phase) -> RunStatus:
        return _FAILED_STATUS_OF[phase]

    @staticmethod
    def active_status_of(phase: Phase) -> RunStatus:
        return _ACTIVE_STATUS_OF[phase]


_FAILED = frozenset({RunStatus.GENERATING_FAILED, RunStatus.TRAINING_FAILED})
_ACTIVE = frozenset({RunStatus.GENERATING, RunStatus.TRAINING})
_PHASE = {
    RunStatus.GENERATING: Phase.GENERATION,
    RunStatus.GENERATED: Phase.GENERATION,
    RunStatus.GENERATING_FAILED: Phase.GENERATION,
    RunStatus.TRAINING: Phase.TRAINING,
    RunStatus.TRAINING_FAILED: Phase.TRAINING,
    RunStatus.COMPLETED: Phase.TRAINING,
}
_FAILED_STATUS_OF = {
    Phase.GENERATION: RunStatus.GENERATING_FAILED,
    Phase.TRAINING: RunStatus.TRAINING_FAILED,
}
_ACTIVE_STATUS_OF = {Phase.GENERATION: RunStatus.GENERATING, Phase.TRAINING: RunStatus.TRAINING}

# The lifecycle of DESIGN.md section 3. Nothing else may change a status.
ALLOWED_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.GENERATING: frozenset({RunStatus.GENERATED, RunStatus.GENERATING_FAILED}),
    RunStatus.GENERATED: frozenset({RunStatus.TRAINING}),
    RunStatus.TRAINING: frozenset({RunStatus.COMPLETED, RunStatus.TRAINING_FAILED}),
    RunStatus.GENERATING_FAILED: frozenset({RunStatus.GENERATING}),
    RunStatus.TRAINING_FAILED: frozenset({RunStatus.TRAINING}),
    RunStatus.COMPLETED: frozenset(),
}

# Recovery transitions bump `attempt`, the fencing token that makes writes of
# an older attempt (a zombie worker, a late hook) fail instead of landing.
RECOVERY_TRANSITIONS: frozenset[tuple[RunStatus, RunStatus]] = frozenset(
    {
        (RunStatus.GENERATING_FAILED, RunStatus.GENERATING),
        (RunStatus.TRAINING_FAILED, RunStatus.TRAINING),
    }
)


def check_transition(from_status: RunStatus, to_status: RunStatus) -> bool:
    """Raise `InvalidTransition` unless allowed; return whether it bumps `attempt`."""
    if to_status not in ALLOWED_TRANSITIONS[from_status]:
        raise InvalidTransition(from_status.value, to_status.value)
    return (from_status, to_status) in RECOVERY_TRANSITIONS
