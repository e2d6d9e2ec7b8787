"""How the CLI shows runs: a table that fits 80 columns, and one run as a card."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dmflow.coverage import coverage_line, held_out_line
from dmflow.driver import run_liveness
from dmflow.models import RunUsage, TrainingMetrics, TrainingRun
from dmflow.prefect_ui import PrefectUI
from dmflow.run_ids import short
from dmflow.settings import Settings
from dmflow.status import RunStatus
from dmflow.training.recall_rows import recall_rows


def status_style(status: RunStatus) -> str:
    """Failed red, active yellow, completed green; generated (resting) cyan."""
    if status.is_failed:
        return "red"
    if status.is_active:
        return "yellow"
    return "green" if status is RunStatus.COMPLETED else "cyan"


def why_dead(run: TrainingRun, settings: Settings, now: datetime | None = None) -> str | None:
    """Why a run that says it is being worked on has nobody working on it (its process is
    gone, or its heartbeat stopped), or None. Read only: the sweep or `dmflow recover`
    writes the failure."""
    found = run_liveness(run, settings, now)
    return found.reason if found.dead else None


def dead_runs_note(dead: dict[str, str]) -> list[str]:
    """One line per run whose driver is gone, under the table (short id -> status)."""
    return [
        f"{ref} is {status} but nothing drives it any more: resume with `dmflow recover {ref}`"
        for ref, status in dead.items()
    ]


def progress(run: TrainingRun) -> str:
    return f"{run.processed_chunks}/{run.total_chunks}" if run.total_chunks else "-"


def chunks_done(run: TrainingRun) -> str:
    """`48/314`, or `48` while the total is not known yet (in a sentence, not a table)."""
    return progress(run) if run.total_chunks else str(run.processed_chunks)


def age(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "-"
    seconds = max(0.0, ((now or datetime.now(UTC)) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def shorten_left(text: str, width: int) -> str:
    """The end of `text` (a path's name is at its end) in at most `width` characters."""
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1) :] if width > 1 else "…"


def runs_table(
    runs: list[TrainingRun],
    width: int,
    now: datetime | None = None,
    dead: frozenset[str] = frozenset(),
) -> Table:
    """`dead`: ids of the runs whose driver is gone (shown as such, in red)."""
    headers = ["id", "dataset", "status", "chunks", "pairs", "att", "age"]
    rows = [
        [
            short(run.id),
            run.dataset,
            run.status.value + (", dead" if str(run.id) in dead else ""),
            progress(run),
            str(run.pair_count),
            str(run.attempt),
            age(run.updated_at or run.created_at, now),
        ]
        for run in runs
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fixed = sum(w for i, w in enumerate(widths) if i != 1) + 2 * (len(headers) - 1)
    dataset_width = max(len("dataset"), min(widths[1], width - fixed - 1))
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    for header in headers:
        right = header in ("chunks", "pairs", "att")
        table.add_column(header, justify="right" if right else "left", no_wrap=True)
    for run, row in zip(runs, rows, strict=True):
        row[1] = shorten_left(row[1], dataset_width)
        style = "red" if str(run.id) in dead else status_style(run.status)
        table.add_row(*[escape(c) for c in row[:2]], f"[{style}]{row[2]}[/{style}]", *row[3:])
    return table


def recall_table(metrics: TrainingMetrics | None, **style: Any) -> Table | None:
    """The run's recall before/after, or None when it has none; `style`: Table options."""
    rows = recall_rows(metrics)
    if not rows:
        return None
    table = Table("recall", "before", "after", "change", **style)
    for row in rows:
        table.add_row(*row)
    return table


def unusable_replies(usage: RunUsage) -> str | None:
    """The share of unusable replies, once a reply was: a model that does not follow the
    prompt shows here first."""
    share = usage.unusable_share
    if not usage.replies_unusable or share is None:
        return None
    return f"{100 * share:.0f} % of replies unusable"


def _usage_line(usage: RunUsage) -> str | None:
    parts = [f"{usage.requests} requests"] if usage.requests else []
    if usage.tokens:
        parts.append(f"{usage.tokens} tokens")
    if usage.retries:
        parts.append(f"{usage.retries} retries")
    if unusable := unusable_replies(usage):
        parts.append(unusable)
    if usage.cost_usd:
        parts.append(f"est. ${usage.cost_usd:.4f}")
    if usage.chunks and not parts:
        parts.append(f"{usage.chunks} chunks, local generator (free)")
    return ", ".join(parts) or None


def run_card(
    run: TrainingRun, ui: PrefectUI | None, now: datetime | None = None, dead: str | None = None
) -> Group:
    """One run for a person: where it stands, what it made, what it cost, what to do.
    `dead`: why nothing drives the run any more, when its driver is gone."""
    style = "red" if dead else status_style(run.status)
    head = Text.assemble(
        ("run ", "bold"),
        (str(run.id), "bold"),
        "  ",
        (run.status.value + (", dead" if dead else ""), f"bold {style}"),
        f"  attempt {run.attempt}, updated {age(run.updated_at, now)}",
    )
    facts = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    facts.add_row("dataset", escape(run.dataset))
    chunks = f"{progress(run)} processed, {run.pair_count} pairs"
    facts.add_row("chunks", chunks)
    if covered := coverage_line(run):
        facts.add_row("coverage", escape(covered))
    if trained := held_out_line(run.metrics):
        facts.add_row("pairs", trained)
    if run.deeplake_job_id:
        facts.add_row("job", escape(run.deeplake_job_id))
    if usage := _usage_line(run.usage):
        facts.add_row("usage", usage)
    if run.error_message:
        facts.add_row("error", Text(run.error_message, style="red"))
    if dead:
        facts.add_row("driver", Text(dead, style="red"))
    if run.status.is_failed or dead:
        facts.add_row("resume", f"dmflow recover {short(run.id)}")
    if run.status.is_failed:  # a dead run is failed by its recovery; only then deletable
        facts.add_row("or drop", f"dmflow delete {short(run.id)}")
    parts: list[Any] = [head, facts]
    if recall := recall_table(run.metrics, box=None, padding=(0, 2, 0, 0)):
        parts += [Text(""), recall]
    if ui and run.flow_run_id:  # a line of its own, never folded: it is copied whole
        address = ui.flow_run(run.flow_run_id)
        parts += [Text(""), Text(f"Prefect UI: {address}", no_wrap=True, overflow="ignore")]
    return Group(*parts)
