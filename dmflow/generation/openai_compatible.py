"""Questions from any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp).

Concurrency is bounded, requests and tokens are rate limited, and 429, 5xx,
timeouts and connection errors are retried with exponential backoff that
honours `Retry-After`; every attempt is counted and paced here. Requests go out
through `ChatEndpoint` (aiohttp), not the openai SDK, whose CPU per request capped
the rate at high concurrency.

A chunk is skipped only for a reason of its own (its output stays unusable, the
endpoint refuses its request). A chunk whose every try failed for transport reasons
is left unanswered: not recorded, so it is asked again. When every request fails,
the endpoint is down: `EndpointBreaker` holds the asking until it answers again.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from dmflow.chunks import Chunk
from dmflow.generation.answers import Answers
from dmflow.generation.base import GenerationFailed
from dmflow.generation.chat_http import (
    ChatEndpoint,
    ChatRequestFailed,
    ChatRequestTimedOut,
    ChatStatusError,
)
from dmflow.generation.cleaning import clean_questions, dropped_usage, parse_question_list
from dmflow.generation.outage import EndpointBreaker
from dmflow.generation.prompts import PromptStyle, messages_for
from dmflow.generation.ratelimit import RateLimiter
from dmflow.models import ChunkResult
from dmflow.redaction import scrub

MAX_PASSAGE_CHARS = 8000


@dataclass(frozen=True)
class OpenAIGeneratorConfig:
    model: str
    api_key: SecretStr
    base_url: str | None = None
    questions_per_chunk: int = 4
    concurrency: int = 8
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout_s: float = 60.0
    max_attempts: int = 5
    """Requests of a chunk that may fail for transport reasons."""
    content_attempts: int = 3
    """Replies of a chunk that may be unusable before it is skipped."""
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_output_tokens: int = 400
    cost_per_1k_prompt_tokens: float = 0.0
    cost_per_1k_completion_tokens: float = 0.0
    outage_wait_s: float = 300.0
    """How long an endpoint that fails every request may hold the run."""
    prompt: PromptStyle = "list"
    """`list`: all of a chunk's questions as a JSON array in one request, and after an
    unusable reply one question per request; `one_question`: one question per request
    from the start, `questions_per_chunk` requests a chunk (small models)."""

    @property
    def outage_threshold(self) -> int:
        """Transport failures in a row that mean the endpoint is down, not unlucky: with
        1 in 10 requests failing, 5 in a row happen once in 100,000."""
        return max(5, min(self.concurrency, 16))


NOT_A_COMPLETION = "the endpoint's reply is not a chat completion"


class _Transient(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, description: str, retry_after: float | None, probe: bool) -> None:
        super().__init__(description)
        self.retry_after, self.probe = retry_after, probe


@dataclass
class _Outcome:
    result: ChunkResult | None
    """None: every try failed for transport reasons (unanswered, to be asked again)."""
    problem: str = ""


class OpenAIQuestionGenerator:
    name = "openai"

    def __init__(self, config: OpenAIGeneratorConfig) -> None:
        self.config = config
        self._endpoint = ChatEndpoint(
            config.base_url, config.api_key, config.timeout_s, connections=config.concurrency
        )
        self._slots = asyncio.Semaphore(config.concurrency)
        self._limiter = RateLimiter(config.requests_per_minute, config.tokens_per_minute)
        self._breaker = EndpointBreaker(
            threshold=config.outage_threshold, wait_s=config.outage_wait_s
        )

    async def generate(self, chunks: Sequence[Chunk], answers: Answers) -> None:
        async with self._endpoint:
            await _all_or_none(self._one(chunk, answers) for chunk in chunks)

    async def _one(self, chunk: Chunk, answers: Answers) -> None:
        # A chunk keeps its slot through all its tries: at most `concurrency` chunks are
        # being asked, each finishes before another starts, so answers are recorded at
        # the endpoint's pace and a kill loses at most `concurrency` chunks' requests.
        # (Taking a slot per request advanced every chunk in flight in lockstep: with a
        # slow endpoint, 128 chunks' first tries, then their second tries, ...)
        async with self._slots:
            outcome = await self._answer(chunk, answers)
        if outcome.result is not None:
            answers.add(outcome.result)
        else:
            answers.give_up(chunk, outcome.problem)

    async def _answer(self, chunk: Chunk, usage: Answers) -> _Outcome:
        config = self.config
        passage = chunk.text[:MAX_PASSAGE_CHARS]
        n = config.questions_per_chunk
        style: PromptStyle = config.prompt
        # One question a request needs n requests for n questions, and each may fail.
        content_tries = config.content_attempts + (n - 1 if style == "one_question" else 0)
        questions: list[str] = []
        failed = 0  # transport failures that count: not those while the endpoint was down
        tries = 0  # replies
        malformed = 0
        while True:
            messages = messages_for(style, passage, n)
            estimated_tokens = sum(len(m["content"]) for m in messages) // 4
            estimated_tokens += config.max_output_tokens
            try:
                content = await self._request(messages, estimated_tokens, usage)
            except _Transient as problem:
                if not self._breaker.failed(
                    str(problem), probe=problem.probe, retry_after_s=problem.retry_after
                ):
                    continue  # the endpoint is down: the breaker holds the next try
                failed += 1
                if failed >= config.max_attempts:
                    return _Outcome(None, f"request failed {failed} times: {problem}")
                usage.count("retries", 1)
                await asyncio.sleep(self._delay(failed - 1, problem.retry_after))
                continue
            except _RefusedRequest as refused:
                # Refused for this chunk only (too long for the context, say): no retry helps.
                return _Outcome(ChunkResult.skipped(chunk.id, str(refused)))
            tries += 1
            questions, was_malformed, added_nothing = _kept_questions(
                content, questions, chunk.text, n, usage
            )
            malformed += was_malformed
            enough = len(questions) >= (n if style == "one_question" else 1)
            if enough or (questions and tries >= content_tries):
                return _Outcome(ChunkResult.done(chunk.id, questions, chunk.text))
            if tries >= content_tries:
                problem_text = (
                    "malformed output" if malformed == tries else "no usable questions in output"
                )
                reason = f"{problem_text} after {tries} tries"
                return _Outcome(ChunkResult.skipped(chunk.id, reason))
            if added_nothing:
                usage.count("retries", 1)  # asked again after an unusable reply
            # The same prompt fails the same way: after an unusable reply, ask for one
            # question in plain words.
            style = "one_question"

    async def _request(
        self, messages: list[dict[str, str]], estimated_tokens: int, usage: Answers
    ) -> str | None:
        # Right before sending, with the chunk's slot in hand: a chunk that passed this
        # while waiting for a slot would be asked after the database stopped recording.
        async with usage.sending(self.config.concurrency):
            probe = await self._breaker.admit()
            await self._limiter.acquire(estimated_tokens)
            usage.count("requests", 1)
            body = {
                "model": self.config.model,
                "messages": messages,
                "max_tokens": self.config.max_output_tokens,
                "temperature": 0.3,
            }
            try:
                response = await self._endpoint.complete(body)
            except (ChatStatusError, ChatRequestFailed) as exc:
                raise self._classified(exc, probe, usage) from None
            except ValueError:
                raise _Transient(NOT_A_COMPLETION, None, probe) from None
            except BaseException:
                self._breaker.abandoned(probe)  # cancelled: neither answered nor failed
                raise
        try:
            choices = response.get("choices") or []
            content = choices[0]["message"]["content"] if choices else None
        except (AttributeError, KeyError, IndexError, TypeError):
            raise _Transient(NOT_A_COMPLETION, None, probe) from None
        self._breaker.answered()
        reported = response.get("usage") or {}
        if reported:
            prompt = int(reported.get("prompt_tokens") or 0)
            completion = int(reported.get("completion_tokens") or 0)
            usage.count("prompt_tokens", prompt)
            usage.count("completion_tokens", completion)
            usage.count(
                "cost_usd",
                prompt / 1000 * self.config.cost_per_1k_prompt_tokens
                + completion / 1000 * self.config.cost_per_1k_completion_tokens,
            )
        return content if isinstance(content, str) else None

    def _classified(
        self, exc: ChatStatusError | ChatRequestFailed, probe: bool, usage: Answers
    ) -> Exception:
        """What a failed request means: the run cannot go on (a refused key, no such
        model), a transport failure worth another try (`_Transient`), or this request
        refused for what it holds (`_RefusedRequest`)."""
        if isinstance(exc, ChatRequestTimedOut):
            return _Transient(f"timed out after {self.config.timeout_s:g} s", None, probe)
        if isinstance(exc, ChatRequestFailed):
            return _Transient(f"connection failed: {_brief(exc)}", None, probe)
        status = exc.status
        if status in (401, 403):
            return GenerationFailed(
                f"the LLM endpoint refused the API key ({status}): check DMFLOW_LLM_API_KEY"
            )
        if status == 404:
            return GenerationFailed(
                f"the LLM endpoint has no model {self.config.model!r} (404): check "
                "DMFLOW_LLM_MODEL and DMFLOW_LLM_BASE_URL"
            )
        if status == 429:
            usage.count("rate_limited", 1)
            return _Transient(f"429 rate limited: {_brief(exc)}", exc.retry_after_s, probe)
        if status >= 500 or status in (408, 409):
            problem = f"{status} from the endpoint: {_brief(exc)}"
            return _Transient(problem, exc.retry_after_s, probe)
        self._breaker.answered()  # it answered
        if status in _REFUSED_FOR_THIS_REQUEST:
            return _RefusedRequest(f"request refused ({status}): {_brief(exc)}")
        return GenerationFailed(
            f"the LLM endpoint answered {status}: {_brief(exc)}; "
            "check DMFLOW_LLM_BASE_URL and DMFLOW_LLM_MODEL"
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.backoff_max_s)
        backoff: float = min(self.config.backoff_max_s, self.config.backoff_base_s * 2.0**attempt)
        return backoff * (0.5 + random.random() / 2)  # jitter spreads a burst of retries


_REFUSED_FOR_THIS_REQUEST = frozenset({400, 413, 422})
"""Statuses that refuse one request for what it holds (too long for the context, a
content policy, a body the endpoint cannot process): that chunk is skipped."""


def _kept_questions(
    content: str | None, collected: list[str], text: str, n: int, usage: Answers
) -> tuple[list[str], bool, bool]:
    """The chunk's usable questions once this reply is added to those already kept,
    whether the reply held no question at all, and whether it added none; what was
    dropped is counted by reason."""
    usage.count("replies", 1)
    raw = parse_question_list(content or "")
    if raw is None:
        usage.count("replies_malformed", 1)
    dropped: Counter[str] = Counter()
    kept = clean_questions([*collected, *(raw or [])], text, limit=n, dropped=dropped)
    for key, count in dropped_usage(dropped).items():
        usage.count(key, count)
    added_nothing = len(kept) <= len(collected)
    if added_nothing:
        usage.count("replies_unusable", 1)
    return kept, raw is None, added_nothing


class _RefusedRequest(Exception):
    """The endpoint refused this request for what it holds."""


async def _all_or_none(work: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Every chunk asked at once. When one fails the batch (a refused key, say), the
    others are cancelled rather than left sending requests for a batch already lost."""
    tasks = [asyncio.ensure_future(one) for one in work]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


def _brief(exc: Exception) -> str:
    """The endpoint's own words, which end up in a chunk's skip reason: without any key
    or password it may echo back."""
    text = getattr(exc, "message", None) or str(exc)
    return scrub(" ".join(str(text).split()))[:200]
