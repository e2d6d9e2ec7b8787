"""The run's summary artifact on the flow run people start and retry (the parent), so the
Prefect UI tells the story there: status, chunks, pairs, usage, recall, where the phases'
own artifacts are. Updated at each phase's end and when the run fails."""

from __future__ import annotations

import logging

from prefect.artifacts import acreate_markdown_artifact

from dmflow.models import TrainingRun
from dmflow.run_ids import short

logger = logging.getLogger("dmflow.summary")


def summary_markdown(run: TrainingRun) -> str:
    lines = [
        f"# Training run `{short(run.id)}`: {run.status.value}",
        "",
        f"- dataset: `{run.dataset}`",
        f"- chunks: {run.processed_chunks} of {run.total_chunks} processed",
        f"- pairs: {run.pair_count}",
        f"- attempt: {run.attempt}",
    ]
    if run.deeplake_job_id:
        lines.append(f"- Deep Memory job: `{run.deeplake_job_id}`")
    if run.error_message:
        lines += ["", f"**Error:** {run.error_message}"]
        if run.status.is_failed:
            lines.append(f"Resume with `dmflow recover {short(run.id)}`.")
    metrics = run.metrics or {}
    before, after = metrics.get("before") or {}, metrics.get("after") or {}
    if before:
        lines += ["", "| recall | before | after | change |", "| --- | --- | --- | --- |"]
        for key, was in before.items():
            now = after.get(key)
            change = "" if now is None else f"{100 * (now - was):+.1f} pts"
            shown = "n/a" if now is None else f"{now:.3f}"
            lines.append(f"| {key} | {was:.3f} | {shown} | {change} |")
    if run.usage:
        lines += ["", "| usage | value |", "| --- | --- |"]
        lines += [f"| {key} | {value:g} |" for key, value in sorted(run.usage.items())]
    lines += [
        "",
        f"Phases: artifacts `generation-progress-{run.id}`, `generation-summary-{run.id}` "
        "on the generate subflow runs; the recall evaluation on the train subflow run.",
    ]
    return "\n".join(lines)


def _key(run: TrainingRun) -> str:
    return f"training-run-{run.id}"


async def publish_summary(run: TrainingRun) -> None:
    try:
        await acreate_markdown_artifact(
            markdown=summary_markdown(run),
            key=_key(run),
            description=f"Training run {run.id} ({run.dataset})",
        )
    except Exception as exc:  # the UI's summary must never fail the run
        logger.warning("could not publish the summary of run %s: %s", run.id, exc)
