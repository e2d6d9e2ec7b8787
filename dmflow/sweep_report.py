"""What one pass of the recovery sweep says it did: one log line and a small artifact,
also when it found nothing, so that a quiet sweep can be told from a broken one."""

from __future__ import annotations

from uuid import UUID

from dmflow.models import SweepReport
from dmflow.run_ids import short
from dmflow.settings import Settings

_ROWS = [
    ("reconciled", "dead, marked failed in their phase"),
    ("recovered", "recovered in this flow run"),
    ("started", "handed to recover-training-run"),
    ("failed", "failed again while recovered"),
    ("waiting", "waiting for their backoff"),
    ("over_budget", "over the attempt budget, left for a person"),
]


def sweep_line(report: SweepReport, limit: int, settings: Settings) -> str:
    counts = ", ".join(f"{len(getattr(report, key))} {what}" for key, what in _ROWS)
    return (
        f"checked {report.seen} runs (the newest {limit} at most): {counts} "
        f"(budget {settings.recovery_attempt_budget} attempts, backoff "
        f"{settings.recovery_backoff_s:g} s x 2^attempt)"
    )


def sweep_markdown(report: SweepReport, limit: int, settings: Settings) -> str:
    lines = [
        "# Recovery sweep",
        "",
        f"Checked {report.seen} runs (the newest {limit} at most); "
        f"attempt budget {settings.recovery_attempt_budget}, backoff "
        f"{settings.recovery_backoff_s:g} s x 2^attempt.",
        "",
        "| runs | count | ids |",
        "| --- | --- | --- |",
    ]
    for key, what in _ROWS:
        ids: list[UUID] = getattr(report, key)
        lines.append(f"| {what} | {len(ids)} | {' '.join(f'`{short(i)}`' for i in ids)} |")
    return "\n".join(lines)
