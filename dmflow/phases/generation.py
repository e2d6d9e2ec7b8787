"""Generation: questions for every chunk not yet in the run's ledger, resumable.

The chunk ledger is the source of truth for what is done: a resumed run skips every
chunk already recorded. A bounded number of batches is asked at once
(`BatchesInFlight`); their chunks' answers are recorded as they finish
(`AnswerRecorder`), each record one transaction, so a run killed at any moment loses at
most the requests in flight and the answers not recorded (`concurrency +
UNRECORDED_LIMIT` together, see `Answers.sending`). Chunks the endpoint never
answered are asked once more at the end, then left to the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from dmflow.chunks import Chunk, ChunkSource, open_chunk_source
from dmflow.generation.answers import Answers, AnswersToRecord, RecordingStopped
from dmflow.generation.base import ChunksUnanswered, QuestionGenerator
from dmflow.generation.factory import build_generator
from dmflow.generation.outage import EndpointOutage
from dmflow.generation.patience import record_patiently
from dmflow.models import ChunkResult, RunUsage, TrainingRun
from dmflow.params import RunParams
from dmflow.phases.batches_in_flight import BatchesInFlight
from dmflow.phases.heartbeat import heartbeat
from dmflow.phases.markdown import generation_markdown
from dmflow.phases.recorder import AnswerRecorder
from dmflow.phases.steps import GenerationSteps, Log
from dmflow.sampling import SamplePlan, plan_sample, target_chunks
from dmflow.settings import Settings
from dmflow.status import RunStatus
from dmflow.store.base import RunStore, earlier_completed_runs


async def generate(
    run: TrainingRun, store: RunStore, settings: Settings, steps: GenerationSteps
) -> TrainingRun:
    """Generate for a `generating` run this process has entered; return it `generated`."""
    params = RunParams.model_validate(run.params)
    source = await asyncio.to_thread(open_chunk_source, run.dataset, settings)
    run = await asyncio.to_thread(store.update_progress, run, total_chunks=source.total)
    recorded = await asyncio.to_thread(store.recorded_chunk_ids, run.id)
    earlier = await asyncio.to_thread(_asked_by_earlier_runs, store, run, params)
    plan = await asyncio.to_thread(_plan, source, run, params, earlier)
    generator = build_generator(params, settings)
    steps.log.info(
        "generating for %s: %d chunks, %d already recorded, generator %s, batches of %d",
        run.dataset,
        source.total,
        len(recorded),
        generator.name,
        params.batch_size,
    )
    if earlier:
        steps.log.info("%d chunks were asked by earlier completed runs: not asked", len(earlier))
    if plan is not None:
        steps.log.info(
            "max_pairs %d: asking a sample spread over the dataset (%d chunks of %d%s)",
            params.max_pairs,
            int(plan.rows(0).sum()),
            plan.candidates,
            "" if plan.documents is None else f", {plan.document_count} documents",
        )
    await steps.progress(run, force=True)
    skip = recorded | earlier if earlier else recorded
    passes = (
        (f"pass{n + 1}-" if n else "", source.batches(params.batch_size, skip, rows))
        for n, rows in enumerate(_pass_rows(plan))
    )
    async with heartbeat(store, run, settings):
        in_flight = BatchesInFlight[object](batches_in_flight(params, settings))
        run = await _record_all(run, store, passes, generator, params, settings, in_flight, steps)
    coverage = await asyncio.to_thread(_coverage, store, run, source, plan, params, earlier)
    return await _finish(run, store, params, steps, coverage)


def _asked_by_earlier_runs(store: RunStore, run: TrainingRun, params: RunParams) -> set[str]:
    """With `include_previous_runs`: the chunks the dataset's earlier completed runs asked
    (answered or skipped). Their pairs are trained on again; they are not paid for again."""
    if not params.include_previous_runs:
        return set()
    asked: set[str] = set()
    for earlier in earlier_completed_runs(store, run):
        asked |= store.recorded_chunk_ids(earlier.id)
    return asked


def _plan(
    source: ChunkSource, run: TrainingRun, params: RunParams, earlier: set[str]
) -> SamplePlan | None:
    """The spread sample, or None: every chunk in dataset order (the cap does not stop the
    run early, or `sample` is `in_order`; a run stored before sampling existed resumes
    as it started)."""
    if run.params.get("sample", "in_order") != "spread":
        return None
    return plan_sample(
        source.ids_and_documents(),
        source.total,
        seed=params.sample_seed,
        target_chunks=target_chunks(params.max_pairs, params.questions_per_chunk),
        exclude=earlier,
    )


def _pass_rows(plan: SamplePlan | None) -> Iterator[npt.NDArray[np.bool_] | None]:
    if plan is None:
        yield None
        return
    for n in range(plan.passes):
        yield plan.rows(n)


def _coverage(
    store: RunStore,
    run: TrainingRun,
    source: ChunkSource,
    plan: SamplePlan | None,
    params: RunParams,
    earlier: set[str],
) -> dict[str, Any]:
    """What the run's chunks cover of the dataset, for its summary."""
    capped = run.pair_count >= params.max_pairs
    coverage: dict[str, Any] = {
        # in_order: the cap stopped a walk in dataset order; all: the chunks ran out first
        "sample": "spread" if plan is not None else "in_order" if capped else "all",
        "chunks": source.total,
        "candidates": plan.candidates if plan is not None else source.total - len(earlier),
        "asked": run.processed_chunks,
    }
    if earlier:
        coverage["asked_earlier"] = len(earlier)
    if plan is not None:
        coverage["seed"] = params.sample_seed
        if plan.documents is not None:
            asked = source.rows_of(store.recorded_chunk_ids(run.id))
            coverage["documents"] = plan.document_count
            coverage["documents_covered"] = plan.documents_covered(asked)
    return coverage


def batches_in_flight(params: RunParams, settings: Settings) -> int:
    """The setting, or more when the LLM's concurrency needs more chunks than that to keep
    every request slot busy while a batch is being recorded."""
    if params.generator != "openai":
        return settings.generation_batches_in_flight
    to_fill_slots = -(-settings.llm_concurrency // params.batch_size)
    return max(settings.generation_batches_in_flight, to_fill_slots + 1)


async def _record_all(
    run: TrainingRun,
    store: RunStore,
    passes: Iterator[tuple[str, Iterator[list[Chunk]]]],
    generator: QuestionGenerator,
    params: RunParams,
    settings: Settings,
    in_flight: BatchesInFlight[object],
    steps: GenerationSteps,
) -> TrainingRun:
    """Ask every batch of each pass until the cap is met, a bounded number in flight,
    while the recorder records their chunks as they finish; then ask once more the chunks
    the endpoint never answered. Return the run as the last record left it."""
    recorder = AnswerRecorder(store, run, params.max_pairs, steps, settings.db_outage_wait_s)
    in_flight.enough = recorder.capped  # the cap met: what is in flight is not worth paying
    recorder.start()
    try:
        for label, batches in passes:
            if recorder.latest.pair_count >= params.max_pairs:
                break
            if label:
                steps.log.info(
                    "%d pairs of %d after the sample's %s: asking its next slice",
                    recorder.latest.pair_count,
                    params.max_pairs,
                    "first pass" if label == "pass2-" else "earlier passes",
                )
            await _ask(batches, generator, params, in_flight, recorder, steps, label)
        later = recorder.answers.take_unanswered()
        if later and recorder.latest.pair_count < params.max_pairs:
            steps.log.warning(
                "%d chunks got no answer from the LLM endpoint (%s): asking them again",
                len(later),
                recorder.answers.unanswered_reason,
            )
            again = (
                later[i : i + params.batch_size] for i in range(0, len(later), params.batch_size)
            )
            await _ask(again, generator, params, in_flight, recorder, steps, "again-")
    except BaseException as exc:
        await in_flight.cancel()
        latest = await recorder.close(failed=True)
        with contextlib.suppress(Exception):  # the report must not hide the failure
            await steps.progress(latest, force=True)  # where it stopped, not a second ago
        raise _explained(exc, recorder, latest) from None
    latest = await recorder.close(failed=False)
    return await _settle_unanswered(latest, store, recorder.answers, params, settings, steps)


async def _ask(
    batches: Iterator[list[Chunk]],
    generator: QuestionGenerator,
    params: RunParams,
    in_flight: BatchesInFlight[object],
    recorder: AnswerRecorder,
    steps: GenerationSteps,
    label: str,
) -> None:
    index = 0
    while recorder.latest.pair_count < params.max_pairs:
        chunks = await asyncio.to_thread(next, batches, None)
        if chunks is None:
            break
        index += 1
        name = f"{label}{index}-{chunks[0].id}"
        await in_flight.add(steps.ask(generator, chunks, recorder.answers, name))
        recorder.check()
        recorder.warned = recorder.warned or warn_if_the_model_is_the_problem(
            recorder.latest.usage, steps.log
        )
    await in_flight.drain()
    recorder.check()


MODEL_CHECK_REPLIES = 50
MOSTLY_UNUSABLE = 0.8


def warn_if_the_model_is_the_problem(usage: RunUsage, log: Log) -> bool:
    """Once 50 replies are in, one warning when over 80 % of them were unusable: the
    model, not the endpoint, is what fails. True once it has warned."""
    replies = usage.replies
    if replies < MODEL_CHECK_REPLIES:
        return False
    unusable = usage.replies_unusable
    if unusable / replies <= MOSTLY_UNUSABLE:
        return True  # checked: no need to look again
    reasons = usage.dropped
    if usage.replies_malformed:
        reasons["no question in the reply"] = usage.replies_malformed
    listed = ", ".join(
        f"{reason} {n}" for reason, n in sorted(reasons.items(), key=lambda r: -r[1])
    )
    log.warning(
        "%d of %d replies from the model were unusable (%s): try another model, or "
        "--prompt one_question for a small one",
        unusable,
        replies,
        listed or "no reason recorded",
    )
    return True


def _explained(exc: BaseException, recorder: AnswerRecorder, latest: TrainingRun) -> BaseException:
    """The error the phase fails with: the recorder's own when recording stopped the
    asking; an LLM outage with where the run stands and how to resume it."""
    failure = recorder.failure()
    if isinstance(exc, RecordingStopped) and failure is not None:
        return failure
    if isinstance(exc, EndpointOutage):
        return EndpointOutage.at(exc, latest)
    return exc


async def _settle_unanswered(
    run: TrainingRun,
    store: RunStore,
    answers: Answers,
    params: RunParams,
    settings: Settings,
    steps: GenerationSteps,
) -> TrainingRun:
    """Chunks the endpoint did not answer even when asked again: the run cannot be
    `generated` without them. Asked again by the next attempt, unless this attempt is the
    last the sweep's budget allows: then they are given up (a poison request)."""
    left = answers.take_unanswered()
    if not left or run.pair_count >= params.max_pairs:
        return run
    reason = answers.unanswered_reason
    if run.attempt < max(1, settings.recovery_attempt_budget):
        raise ChunksUnanswered(run, len(left), reason)
    given_up = [
        ChunkResult.skipped(c.id, f"no answer in {run.attempt + 1} attempts: {reason}")
        for c in left
    ]
    steps.log.warning(
        "%d chunks got no answer in %d attempts (%s): recorded as skipped",
        len(left),
        run.attempt + 1,
        reason,
    )
    return await record_patiently(
        store,
        run,
        AnswersToRecord(results=given_up),
        params.max_pairs,
        wait_s=settings.db_outage_wait_s,
        latest=run,
    )


async def _finish(
    run: TrainingRun,
    store: RunStore,
    params: RunParams,
    steps: GenerationSteps,
    coverage: dict[str, Any],
) -> TrainingRun:
    capped = run.pair_count >= params.max_pairs
    patch: dict[str, Any] = {"coverage": coverage}
    if capped:
        steps.log.info("stopped at the max_pairs cap of %d pairs", params.max_pairs)
        patch["max_pairs_reached"] = True
    run = await asyncio.to_thread(store.update_progress, run, facts_patch=patch)
    await steps.progress(run, force=True)
    skipped = await asyncio.to_thread(store.skipped_reasons, run.id)
    run = await asyncio.to_thread(store.transition, run, RunStatus.GENERATED)
    await steps.summary(
        f"generation-summary-{run.id}",
        generation_markdown(run, skipped, capped),
        f"Generation summary for run {run.id}",
    )
    steps.log.info(
        "generated %d pairs from %d of %d chunks (%d skipped)",
        run.pair_count,
        run.processed_chunks,
        run.total_chunks,
        sum(skipped.values()),
    )
    return run
