"""The run's summary artifact on the flow run people start and retry (the parent), so the
Prefect UI tells the story there: status, chunks, pairs, usage, recall, where the phases'
own artifacts are. Updated at each phase's end and when the run fails."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

from prefect.artifacts import acreate_markdown_artifact
from prefect.runtime import flow_run as current_flow_run

from dmflow.coverage import coverage_line, held_out_line
from dmflow.models import TrainingRun
from dmflow.phases.markdown import usage_markdown
from dmflow.run_ids import short
from dmflow.training.recall_rows import recall_rows
from flows.names import dataset_name
from flows.views import chunks_done

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
    if rows := recall_rows(run.metrics):
        lines += ["", "| recall | before | after | change |", "| --- | --- | --- | --- |"]
        lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += usage_markdown(run.usage)
    lines += [
        "",
        f"Phases: artifacts `generation-progress-{run.id}`, `generation-summary-{run.id}` "
        "on the generate subflow runs; the recall evaluation on the train subflow run.",
    ]
    return "\n".join(lines)


def progress_line(run: TrainingRun) -> str:
    """`run 3f2a91c4 is generated: 314/314 chunks, 1256 pairs` (the parent's log)."""
    line = (
        f"run {short(run.id)} is {run.status.value}: {chunks_done(run)} chunks, "
        f"{run.pair_count} pairs"
    )
    if run.status.is_failed:
        line += (
            f"; {run.error_message or 'no error recorded'}; resume with "
            f"`dmflow recover {short(run.id)}` or the UI's Retry"
        )
    return line


def _key(run: TrainingRun) -> str:
    return f"training-run-{run.id}"


def _description(run: TrainingRun) -> str:
    """A card in the Artifacts tab shows the first ~35 characters of its description:
    the status first, then what and when."""
    at = (run.updated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    dataset = dataset_name(run.dataset)
    return f"{run.status.value}: training run {short(run.id)} of {dataset}, as of {at}"


async def _write_in_place(key: str, markdown: str, description: str) -> None:
    """One card per flow run: the flow run's artifact with this key is updated (Prefect
    would add a version per call, each a card of its own in the Artifacts tab, the
    oldest first), else created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactUpdate
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    flow_run_id = current_flow_run.id
    async with get_client() as client:
        found = []
        if flow_run_id:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(flow_run_id))]),
                ),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
        if found:
            update = ArtifactUpdate(data=markdown, description=description)
            await client.update_artifact(found[0].id, update)
            return
    await acreate_markdown_artifact(markdown=markdown, key=key, description=description)


async def publish_summary(run: TrainingRun) -> None:
    try:
        await _write_in_place(_key(run), summary_markdown(run), _description(run))
    except Exception as exc:  # the UI's summary must never fail the run
        logger.warning("could not publish the summary of run %s: %s", run.id, exc)
