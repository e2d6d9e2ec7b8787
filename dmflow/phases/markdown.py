"""The phases' summaries as markdown (Prefect artifacts show them as such)."""

from __future__ import annotations

from dmflow.coverage import coverage_line
from dmflow.models import RunUsage, TrainingMetrics, TrainingRun
from dmflow.training.recall_rows import recall_rows


def usage_markdown(usage: RunUsage) -> list[str]:
    """The run's usage as a markdown table (after a blank line), or nothing."""
    counted = usage.counted()
    if not counted:
        return []
    rows = [f"| {key} | {value:g} |" for key, value in sorted(counted.items())]
    return ["", "| usage | value |", "| --- | --- |", *rows]


def generation_markdown(run: TrainingRun, skipped: dict[str, int], capped: bool) -> str:
    lines = [
        f"# Generation of run `{run.id}`",
        "",
        f"- dataset: `{run.dataset}`",
        f"- chunks: {run.processed_chunks} of {run.total_chunks} processed",
        f"- pairs: {run.pair_count}" + (" (stopped at the max_pairs cap)" if capped else ""),
        f"- skipped chunks: {sum(skipped.values())}",
    ]
    if covered := coverage_line(run):
        lines.insert(4, f"- coverage: {covered}")
    lines += [f"  - {reason}: {count}" for reason, count in sorted(skipped.items())]
    return "\n".join(lines + usage_markdown(run.usage))


def recall_markdown(run: TrainingRun, metrics: TrainingMetrics) -> str:
    lines = [
        f"# Deep Memory training of run `{run.id}`",
        "",
        f"- dataset: `{run.dataset}`",
        f"- job: `{run.deeplake_job_id}` ({metrics.trainer or '?'} trainer)",
        f"- pairs: {_or_unknown(metrics.train_pairs)} trained, "
        f"{_or_unknown(metrics.eval_pairs)} held out",
        "",
        "| recall | before | after | change |",
        "| --- | --- | --- | --- |",
    ]
    for key, was, now, change in recall_rows(metrics):
        lines.append(f"| {key.removeprefix('recall')} | {was} | {now} | {change} |")
    if metrics.before and not metrics.after:
        lines += [
            "",
            "`after`: the managed service does not report recall to dmflow; the figures above "
            "are the base embeddings' recall on the held-out questions.",
        ]
    return "\n".join(lines)


def _or_unknown(count: int | None) -> str:
    return "?" if count is None else str(count)
