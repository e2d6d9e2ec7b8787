"""What a run's questions cover of its dataset, in words, for the CLI and the UI."""

from __future__ import annotations

from dmflow.models import TrainingMetrics, TrainingRun


def coverage_line(run: TrainingRun) -> str | None:
    """e.g. `1250 of 100000 chunks asked, a sample spread over the dataset (seed 7);
    830 of 900 documents`; None before generation has finished."""
    coverage = run.facts.coverage
    if not coverage:
        return None
    asked, total = coverage.get("asked", run.processed_chunks), coverage.get("chunks", 0)
    line = f"{asked} of {total} chunks asked"
    sample = coverage.get("sample")
    if sample == "spread":
        line += f", a sample spread over the dataset (seed {coverage.get('seed', '?')})"
    elif sample == "in_order":
        line += (
            ": the max_pairs cap stopped a walk in dataset order, so only the dataset's "
            "first rows are covered (--sample spread spreads them)"
        )
    if coverage.get("asked_earlier"):
        line += f"; {coverage['asked_earlier']} asked by earlier runs, not asked again"
    if coverage.get("documents") is not None:
        line += f"; {coverage['documents_covered']} of {coverage['documents']} documents"
    return line


def held_out_line(metrics: TrainingMetrics | None) -> str | None:
    """e.g. `4012 trained, 436 held out for the recall figures`, once trained."""
    if metrics is None or metrics.train_pairs is None:
        return None
    held = metrics.eval_pairs
    line = f"{metrics.train_pairs} trained"
    return line + (f", {held} held out for the recall figures" if held is not None else "")
