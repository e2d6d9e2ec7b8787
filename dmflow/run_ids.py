"""Run ids as people type them: the full id, or a unique prefix of 6 or more hex digits
(like git). Every command that takes a run id resolves it here."""

from __future__ import annotations

import re
from uuid import UUID

from dmflow.errors import SHORT_ID, DmflowError, RunNotFound
from dmflow.models import TrainingRun
from dmflow.store.base import RunStore

MIN_PREFIX = 6

_HEX = re.compile(r"[0-9a-f]+")


class AmbiguousRunId(DmflowError):
    def __init__(self, prefix: str, matches: list[TrainingRun]) -> None:
        listed = ", ".join(f"{run.id} ({run.status.value}, {run.dataset})" for run in matches)
        super().__init__(
            f"run id {prefix!r} matches {len(matches)} runs: {listed}; type more of it"
        )


def short(run_id: UUID) -> str:
    return str(run_id)[:SHORT_ID]


def parse_prefix(text: str) -> str:
    """The hex digits of a full id or a prefix; ValueError says what is wrong."""
    digits = text.strip().lower().replace("-", "")
    if not _HEX.fullmatch(digits) or len(digits) > 32:
        raise ValueError(f"{text!r} is not a run id (hex digits, as `dmflow runs` shows them)")
    if len(digits) < MIN_PREFIX:
        raise ValueError(f"{text!r} is too short: give at least {MIN_PREFIX} characters of the id")
    return digits


def id_range(digits: str) -> tuple[UUID, UUID]:
    """The lowest and highest ids that start with these hex digits."""
    return UUID(digits.ljust(32, "0")), UUID(digits.ljust(32, "f"))


def resolve_run(store: RunStore, text: str) -> TrainingRun:
    """The one run whose id is, or starts with, `text`."""
    digits = parse_prefix(text)
    if len(digits) == 32:
        return store.get_run(UUID(digits))
    low, high = id_range(digits)
    matches = store.runs_in_id_range(low, high, limit=10)
    if not matches:
        raise RunNotFound(text)
    if len(matches) > 1:
        raise AmbiguousRunId(text, matches)
    return matches[0]
