"""A run's recall as people read it. Kept apart from `evaluation` (numpy) so that the
CLI's `runs` and `show` do not import numpy to print a table."""

from __future__ import annotations

from dmflow.models import TrainingMetrics


def recall_rows(metrics: TrainingMetrics | None) -> list[tuple[str, str, str, str]]:
    """(`recall@k`, before, after, change) as people read them, for every table of a
    run's recall: `after` is `n/a` when the trainer reported none (the managed service)."""
    if metrics is None:
        return []
    rows = []
    for key, was in metrics.before.items():
        now = metrics.after.get(key)
        shown = "n/a" if now is None else f"{now:.3f}"
        change = "" if now is None else f"{100 * (now - was):+.1f} pts"
        rows.append((key, f"{was:.3f}", shown, change))
    return rows
