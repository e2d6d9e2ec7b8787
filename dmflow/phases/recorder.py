"""Record what generation finished while it goes on, not batch by batch.

One recorder per phase takes the answers every `RECORD_EVERY_CHUNKS` finished chunks or
every `RECORD_EVERY_S` seconds, whichever comes first, and records it in one transaction
(`record_patiently`). A request waits for room before it is sent (requests in flight and
finished chunks not yet recorded share `concurrency + UNRECORDED_LIMIT`), so a kill -9
or a database that stops answering costs at most that many chunks. When the phase fails
(an error, a signal), `close` still records what every batch in flight finished, and the
usage of every request they sent.
"""

from __future__ import annotations

import asyncio

from dmflow.generation.answers import UNRECORDED_LIMIT, Answers, AnswersToRecord
from dmflow.generation.patience import record_patiently
from dmflow.models import TrainingRun
from dmflow.phases.steps import GenerationSteps
from dmflow.store.base import RunStore, record_or_skip_unstorable

RECORD_EVERY_CHUNKS = UNRECORDED_LIMIT // 2
"""Half the room: the next chunks are answered while one record is being written."""
RECORD_EVERY_S = 1.0
LAST_RECORD_TIMEOUT_S = 3.0
"""On failure, how long the last record may take: a signal's exit waits for it."""


class AnswerRecorder:
    def __init__(
        self,
        store: RunStore,
        run: TrainingRun,
        max_pairs: int,
        steps: GenerationSteps,
        database_wait_s: float,
    ) -> None:
        self.store, self.run, self.max_pairs = store, run, max_pairs
        self.database_wait_s = database_wait_s
        self.latest = run
        self.answers = Answers()
        self._steps = steps
        self.capped = asyncio.Event()
        """Set once the run holds `max_pairs` pairs: nothing more is worth asking."""
        self.warned = False
        """The model check (`warn_if_the_model_is_the_problem`) is done."""
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._record_as_it_comes())

    async def close(self, *, failed: bool) -> TrainingRun:
        """Stop the recording loop and record what is left. After a failure this is best
        effort and bounded in time: it must not hide the failure nor hold up an exit."""
        self.answers.close()
        if not failed:
            if self._loop is not None:
                await self._loop
            await self._record(self.answers.take())
            return self.latest
        try:
            await asyncio.wait_for(self._last_record(), LAST_RECORD_TIMEOUT_S)
        except Exception as exc:  # the phase's own failure is what the user must see
            self._steps.log.warning(
                "could not record the chunks finished before the failure (%s): they will "
                "be generated again on recovery",
                type(exc).__name__,
            )
        return self.latest

    async def _last_record(self) -> None:
        if self._loop is not None:
            await asyncio.shield(self._loop)
        left = self.answers.take()
        if left.results or left.usage:
            # Directly, not as a task: no retries to wait through while exiting.
            recorded = await asyncio.to_thread(
                record_or_skip_unstorable,
                self.store,
                self.run,
                left.results,
                left.usage,
                self.max_pairs,
                left.key,
            )
            self.latest = recorded

    async def _record_as_it_comes(self) -> None:
        try:
            while await self.answers.ready(RECORD_EVERY_CHUNKS, RECORD_EVERY_S):
                await self._record(self.answers.take())
        except BaseException:
            await self.answers.stop()  # nothing more may be asked: it could not be recorded
            raise

    def check(self) -> None:
        """Raise here, in the phase, a record that failed (after its retries)."""
        if self._loop is not None and self._loop.done():
            self._loop.result()

    def failure(self) -> BaseException | None:
        """Why recording stopped, if it did."""
        if self._loop is None or not self._loop.done() or self._loop.cancelled():
            return None
        return self._loop.exception()

    async def _record(self, batch: AnswersToRecord) -> None:
        if not batch.results and not batch.usage:
            return
        try:
            # Not a step of its own (a Prefect task run): at 40 records a second they
            # flooded the UI, and their ~28 ms of overhead held up the asking, which
            # waits for room while a record is written.
            recorded = await record_patiently(
                self.store,
                self.run,
                batch,
                self.max_pairs,
                wait_s=self.database_wait_s,
                latest=self.latest,
            )
        finally:
            await self.answers.recorded(len(batch.results))
        self.latest = recorded  # records run one at a time: the newest counts it all
        if recorded.pair_count >= self.max_pairs:
            self.capped.set()
        await self._steps.progress(self.latest)
