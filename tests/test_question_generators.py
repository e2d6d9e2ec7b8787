"""Question cleaning and both generators; the OpenAI one against the local test server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import pytest
from pydantic import SecretStr

from dmflow.chunks import Chunk
from dmflow.generation.base import GenerationFailed
from dmflow.generation.cleaning import clean_questions, parse_question_list
from dmflow.generation.local import LocalQuestionGenerator
from dmflow.generation.openai_compatible import OpenAIGeneratorConfig, OpenAIQuestionGenerator
from dmflow.generation.outage import EndpointOutage
from dmflow.models import ChunkOutcome, RunUsage
from dmflow.testing.asking import ask
from tests.fixtures import llm_server as scripts
from tests.fixtures.llm_server import LLMServer, Reply

TEXT = (
    "The for statement is used to iterate over the elements of a sequence such as a string, "
    "tuple or list, or other iterable object. The expression list is evaluated once and "
    "should yield an iterable object. An iterator is created for the result."
)
CHUNKS = [
    Chunk(f"c{n}", f"Chunk number {n} discusses topic{n} keyword{n}. {TEXT}") for n in range(6)
]


def openai_generator(server: LLMServer, **overrides: object) -> OpenAIQuestionGenerator:
    config = OpenAIGeneratorConfig(
        model="test-model",
        api_key=SecretStr("sk-test"),
        base_url=server.url,
        **{"timeout_s": 2.0, "backoff_base_s": 0.01, "max_attempts": 4, **overrides},  # type: ignore[arg-type]
    )
    return OpenAIQuestionGenerator(config)


# -- cleaning -----------------------------------------------------------------


def test_cleaning_strips_decoration() -> None:
    raw = [
        '1. "What is the for statement?"',
        "- How is an iterator created?",
        "Q3: Why is the expression list evaluated once",
        "Here are the questions:",
    ]
    assert clean_questions(raw, TEXT, limit=10) == [
        "What is the for statement?",
        "How is an iterator created?",
        "Why is the expression list evaluated once?",
    ]


def test_cleaning_drops_bad_and_repeated_questions() -> None:
    copied = "The expression list is evaluated once and should yield an iterable object?"
    raw = [
        "What?",
        "x" * 400 + "?",
        "What is the for statement?",
        "what is the FOR statement ?",
        "When is the expression list evaluated?",
        copied,
        "",
        "The sky is blue.",
    ]
    assert clean_questions(raw, TEXT, limit=10) == [
        "What is the for statement?",
        "When is the expression list evaluated?",
    ]


def test_cleaning_keeps_at_most_the_limit() -> None:
    raw = [
        "What does the for statement iterate over?",
        "How often is the expression list evaluated?",
        "What is created for the result?",
        "Which kinds of sequence can be iterated?",
        "What must the expression list yield?",
    ]
    assert len(clean_questions(raw, TEXT, limit=3)) == 3


def test_parsing_model_replies() -> None:
    assert parse_question_list('["What is A?", "What is B?"]') == ["What is A?", "What is B?"]
    assert parse_question_list('```json\n["What is A?"]\n```') == ["What is A?"]
    assert parse_question_list('{"questions": ["What is A?"]}') == ["What is A?"]
    assert parse_question_list("Sure:\n1. What is A?\n2. What is B?") == [
        "1. What is A?",
        "2. What is B?",
    ]
    assert parse_question_list('["What is A?", "What is') is None
    assert parse_question_list("I cannot help with that.") is None


# -- local --------------------------------------------------------------------


def test_local_generator_is_deterministic_and_offline(sample_texts: dict[str, str]) -> None:
    chunks = [Chunk(i, t) for i, t in list(sample_texts.items())[:50]]
    first = asyncio.run(ask(LocalQuestionGenerator(4), chunks))
    second = asyncio.run(ask(LocalQuestionGenerator(4), chunks))
    assert first.results == second.results
    done = [r for r in first.results if r.outcome is ChunkOutcome.DONE]
    assert len(done) == len(chunks)
    assert all(3 <= len(r.questions) <= 4 for r in done)
    assert all(q.endswith("?") for r in done for q in r.questions)


def test_local_generator_skips_chunks_without_text() -> None:
    batch = asyncio.run(ask(LocalQuestionGenerator(4), [Chunk("e", "  "), Chunk("s", "a b")]))
    assert [(r.outcome, r.reason) for r in batch.results] == [
        (ChunkOutcome.SKIPPED, "no usable questions: too little text")
    ] * 2


# -- openai-compatible against the test server --------------------------------


def test_valid_json(llm_server: LLMServer) -> None:
    batch = asyncio.run(ask(openai_generator(llm_server), CHUNKS))
    assert all(r.outcome is ChunkOutcome.DONE and len(r.questions) == 4 for r in batch.results)
    assert batch.usage.requests == len(CHUNKS)
    assert batch.usage.prompt_tokens > 0 and batch.usage.completion_tokens > 0
    assert all(llm_server.requests_for(c.text) == 1 for c in CHUNKS)


def test_prose_with_a_preamble(llm_server: LLMServer) -> None:
    llm_server.script = scripts.with_preamble
    batch = asyncio.run(ask(openai_generator(llm_server), CHUNKS[:2]))
    assert batch.results[0].questions[0] == "What does the passage explain about chunk?"
    assert all(llm_server.requests_for(c.text) == 1 for c in CHUNKS[:2])


def test_malformed_json_is_retried_then_skipped(llm_server: LLMServer) -> None:
    llm_server.script = scripts.malformed
    batch = asyncio.run(ask(openai_generator(llm_server, max_attempts=3), CHUNKS[:2]))
    assert [r.reason for r in batch.results] == ["malformed output after 3 tries"] * 2
    assert all(llm_server.requests_for(c.text) == 3 for c in CHUNKS[:2])


def test_malformed_then_valid(llm_server: LLMServer) -> None:
    llm_server.script = lambda text, n: (
        scripts.malformed(text, n) if n == 1 else scripts.valid_json(text, n)
    )
    batch = asyncio.run(ask(openai_generator(llm_server), CHUNKS[:1]))
    assert batch.results[0].outcome is ChunkOutcome.DONE
    assert batch.usage.retries == 1


def test_duplicates_are_folded(llm_server: LLMServer) -> None:
    llm_server.script = scripts.duplicates
    batch = asyncio.run(ask(openai_generator(llm_server), CHUNKS[:1]))
    assert batch.results[0].questions == ("What does the passage explain about chunk?",)


def test_429_honours_retry_after(llm_server: LLMServer) -> None:
    llm_server.script = scripts.rate_limited_first(2, retry_after_s=0.3)
    started = time.monotonic()
    batch = asyncio.run(ask(openai_generator(llm_server), CHUNKS[:1]))
    elapsed = time.monotonic() - started
    assert batch.results[0].outcome is ChunkOutcome.DONE
    assert llm_server.requests_for(CHUNKS[0].text) == 3
    assert batch.usage.rate_limited == 2
    assert elapsed >= 0.6  # waited as told, not the 0.01 s backoff


def test_500_is_retried(llm_server: LLMServer) -> None:
    llm_server.script = scripts.server_error_first(2)
    batch = asyncio.run(ask(openai_generator(llm_server), CHUNKS[:3]))
    assert all(r.outcome is ChunkOutcome.DONE for r in batch.results)
    assert all(llm_server.requests_for(c.text) == 3 for c in CHUNKS[:3])


def test_slow_responses_time_out_and_are_retried(llm_server: LLMServer) -> None:
    llm_server.script = scripts.slow_first(1, delay_s=1.5)
    batch = asyncio.run(ask(openai_generator(llm_server, timeout_s=0.5), CHUNKS[:2]))
    assert all(r.outcome is ChunkOutcome.DONE for r in batch.results)
    assert all(llm_server.requests_for(c.text) == 2 for c in CHUNKS[:2])


def test_a_chunk_whose_requests_always_fail_is_left_unanswered_not_skipped(
    llm_server: LLMServer,
) -> None:
    bad = CHUNKS[0].text
    llm_server.script = lambda text, n: (
        Reply(500, "{}") if text == bad else scripts.valid_json(text, n)
    )
    batch = asyncio.run(ask(openai_generator(llm_server, max_attempts=2), CHUNKS[:3]))
    # No result: a transport failure is never a reason to skip a chunk for good.
    assert [c.id for c in batch.unanswered] == ["c0"]
    assert [r.chunk_id for r in batch.results] == ["c1", "c2"]
    assert all(r.outcome is ChunkOutcome.DONE for r in batch.results)
    assert llm_server.requests_for(bad) == 2


def test_an_endpoint_down_for_longer_than_the_wait_fails_the_run(llm_server: LLMServer) -> None:
    llm_server.script = lambda text, n: Reply(503, "{}")
    generator = openai_generator(llm_server, max_attempts=2, outage_wait_s=1.5, concurrency=4)
    started = time.monotonic()
    with pytest.raises(EndpointOutage, match=r"failed every request for \d+ s \(503"):
        asyncio.run(ask(generator, CHUNKS))
    assert 1.5 <= time.monotonic() - started < 5
    # Once it is known down, one probe at a time: not every chunk's every try.
    assert llm_server.total_requests <= 5 + 6


def test_an_outage_holds_the_chunks_and_costs_them_no_try(llm_server: LLMServer) -> None:
    down = scripts.outage(after_requests=3, seconds=2.0)
    llm_server.script = down
    chunks = [
        Chunk(f"o{n}", f"Outage chunk {n} about subject{n} matter{n}. {TEXT}") for n in range(12)
    ]
    # 3 tries: each chunk keeps its slot through its tries, so the 4 chunks in flight
    # take turns failing, and a late answer from before the outage restarts the count of
    # failures in a row; with 2 tries a chunk could spend both before the 5th in a row.
    # (Such a chunk is left unanswered and asked again, never skipped.)
    generator = openai_generator(llm_server, max_attempts=3, outage_wait_s=30, concurrency=4)
    batch = asyncio.run(ask(generator, chunks))
    assert batch.unanswered == []
    assert [r.outcome for r in batch.results] == [ChunkOutcome.DONE] * len(chunks)
    # 5 failures in a row show the outage, the 3 other requests in flight fail too, then
    # one probe at a time (0.5, 1, 2 s apart...): not every chunk's every try, and no
    # chunk gave up.
    assert down.failed <= 5 + 3 + 5


def test_bad_api_key_fails_the_run_at_once(llm_server: LLMServer) -> None:
    llm_server.script = scripts.unauthorized
    with pytest.raises(GenerationFailed, match="DMFLOW_LLM_API_KEY"):
        asyncio.run(ask(openai_generator(llm_server), CHUNKS[:3]))
    assert llm_server.total_requests <= 3  # no retries of a refused key


def test_concurrency_is_bounded(llm_server: LLMServer) -> None:
    llm_server.latency_s = 0.2
    generator = openai_generator(llm_server, concurrency=3)
    started = time.monotonic()
    asyncio.run(ask(generator, CHUNKS))  # 6 requests, 3 at a time: two rounds
    assert time.monotonic() - started >= 0.4


def test_requests_per_minute_are_limited(llm_server: LLMServer) -> None:
    # 60/min -> 1/s with a 5 s burst: the 6th request must wait about a second
    generator = openai_generator(llm_server, requests_per_minute=60, concurrency=10)
    started = time.monotonic()
    asyncio.run(ask(generator, CHUNKS))
    assert time.monotonic() - started >= 0.8


def test_usage_cost_estimate(llm_server: LLMServer) -> None:
    generator = openai_generator(
        llm_server, cost_per_1k_prompt_tokens=1.0, cost_per_1k_completion_tokens=2.0
    )
    usage = asyncio.run(ask(generator, CHUNKS[:2])).usage
    expected = usage.prompt_tokens / 1000 + 2 * usage.completion_tokens / 1000
    assert usage.cost_usd == pytest.approx(expected)


def test_assistant_chatter_and_questions_about_nothing_in_the_chunk_are_dropped() -> None:
    dropped: Counter[str] = Counter()
    kept = clean_questions(
        [
            "I'm ready to assist you. What's your task?",
            "I'm ready to assist. What is your request?",
            "I'm ready to assist you with your request. What kind of data do you need?",
            "What is the capital of France?",
            "What does the for statement iterate over?",
            "When is the expression list evaluated?",
            "Which objects does an iterator get created for?",
        ],
        TEXT,
        limit=10,
        dropped=dropped,
    )
    assert kept == [
        "What does the for statement iterate over?",
        "When is the expression list evaluated?",
        "Which objects does an iterator get created for?",
    ]
    assert dropped == {"assistant chatter": 3, "nothing from the chunk": 1}


def test_one_question_per_request_for_small_models(llm_server: LLMServer) -> None:
    llm_server.script = scripts.one_question
    generator = openai_generator(llm_server, prompt="one_question")
    batch = asyncio.run(ask(generator, CHUNKS[:2]))
    assert all(len(r.questions) == 4 for r in batch.results)
    assert all(llm_server.requests_for(c.text) == 4 for c in CHUNKS[:2])
    assert batch.usage.retries == 0


def test_after_an_unusable_list_the_next_try_asks_for_one_question(llm_server: LLMServer) -> None:
    asked: list[str] = []

    def paraphrases_a_list(text: str, attempt: int) -> scripts.Reply:
        asked.append("list" if attempt == 1 else "one")
        if attempt == 1:
            return scripts.Reply(content="The for statement iterates over a sequence.")
        return scripts.one_question(text, attempt)

    llm_server.script = paraphrases_a_list
    batch = asyncio.run(ask(openai_generator(llm_server, max_attempts=3), CHUNKS[:1]))
    [result] = batch.results
    assert result.outcome is ChunkOutcome.DONE and len(result.questions) == 2
    assert batch.usage.retries == 1 and batch.usage.replies_malformed == 1


def test_a_chunk_keeps_its_slot_through_its_tries(llm_server: LLMServer) -> None:
    """Depth first: with 2 slots, at most 2 chunks are being asked at any moment, and a
    chunk that needs 3 tries finishes them before another chunk is asked."""
    seen: list[tuple[str, int]] = []
    failing = scripts.server_error_first(2)

    def record(text: str, attempt: int) -> scripts.Reply:
        seen.append((text, attempt))
        return failing(text, attempt)

    llm_server.script = record
    batch = asyncio.run(ask(openai_generator(llm_server, concurrency=2), CHUNKS))
    assert all(r.outcome is ChunkOutcome.DONE for r in batch.results)
    open_chunks: set[str] = set()
    most = 0
    for text, attempt in seen:
        open_chunks.add(text)
        most = max(most, len(open_chunks))
        if attempt == 3:  # its last try: the chunk is done
            open_chunks.discard(text)
    assert most <= 2, seen


def test_a_model_that_mostly_writes_chatter_is_named_in_one_warning() -> None:
    from dmflow.phases.generation import warn_if_the_model_is_the_problem

    seen: list[str] = []
    log = logging.getLogger("test.model-check")
    log.warning = lambda msg, *args: seen.append(msg % args)  # type: ignore[method-assign]
    usage = RunUsage(replies=49, replies_unusable=49)
    assert not warn_if_the_model_is_the_problem(usage, log) and not seen
    usage = RunUsage.model_validate(
        {"replies": 60, "replies_unusable": 55, "questions_dropped_assistant_chatter": 40}
    )
    assert warn_if_the_model_is_the_problem(usage, log)
    assert seen == [
        "55 of 60 replies from the model were unusable (assistant chatter 40): try another "
        "model, or --prompt one_question for a small one"
    ]
    assert warn_if_the_model_is_the_problem(RunUsage(replies=60, replies_unusable=6), log)
    assert len(seen) == 1
