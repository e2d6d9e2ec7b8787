"""The run's summary artifact on the flow run people start and retry (the parent), so the
Prefect UI tells the story there: status, chunks, pairs, usage, recall, where the phases'
own artifacts are. Updated at each phase's end and when the run fails."""

from __future__ import annotations

import logging

from prefect.artifacts import acreate_markdown_artifact

from dmflow.coverage import coverage_line, held_out_line
from dmflow.models import TrainingRun
from dmflow.phases.markdown import usage_markdown
from dmflow.run_ids import short
from dmflow.training.recall_rows import recall_rows

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
    if covered := coverage_line(run):
        lines.append(f"- coverage: {covered}")
    if trained := held_out_line(run.metrics):
        lines.append(f"- pairs for training: {trained}")
    if run.deeplake_job_id:
        lines.append(f"- Deep Memory job: `{run.deeplake_job_id}`")
    if run.error_message:
        lines += ["", f"**Error:** {run.error_message}"]
        if run.status.is_failed:
            lines.append(f"Resume with `dmflow recover {short(run.id)}`.")
    if rows := recall_rows(run.metrics or {}):
        lines += ["", "| recall | before | after | change |", "| --- | --- | --- | --- |"]
        lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += usage_markdown(run.usage)
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
