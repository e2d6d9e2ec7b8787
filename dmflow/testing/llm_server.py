"""A local OpenAI-compatible chat server on 127.0.0.1 with scripted behaviours.

The real `openai` client talks HTTP to it. A script decides each reply from the
chunk text and how many times that text was requested; the server counts
requests per chunk so tests can prove a recorded chunk was never asked again.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dmflow.generation.prompts import ONE_QUESTION_PROMPT


@dataclass
class Reply:
    status: int = 200
    content: str | None = None
    """The assistant message; None means the default valid JSON questions."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Script = Callable[[str, int], Reply]
"""(chunk text, how many times this text has been requested including now) -> reply."""


def questions_for(text: str, count: int = 4) -> list[str]:
    words = list(dict.fromkeys(w.lower() for w in re.findall(r"[A-Za-z]{5,}", text)))
    topics = (words or ["nothing"])[:count]
    return [f"What does the passage explain about {topic}?" for topic in topics]


_ONE_QUESTION_SUFFIX = ONE_QUESTION_PROMPT.format(passage="")


def passage_of(body: dict[str, Any]) -> str:
    """The chunk's text in a request, however dmflow asked about it."""
    content: str = body["messages"][-1]["content"]
    return content.removesuffix(_ONE_QUESTION_SUFFIX)


def one_question(text: str, attempt: int) -> Reply:
    """What a small model asked for one question answers: one line of plain text."""
    questions = questions_for(text)
    return Reply(content=f"Sure! {questions[(attempt - 1) % len(questions)]}")


def valid_json(text: str, attempt: int) -> Reply:
    return Reply(content=json.dumps(questions_for(text)))


def with_preamble(text: str, attempt: int) -> Reply:
    listed = "\n".join(f"{n}. {q}" for n, q in enumerate(questions_for(text), 1))
    return Reply(content=f"Sure! Here are some questions the passage answers:\n\n{listed}\n")


def malformed(text: str, attempt: int) -> Reply:
    return Reply(content='["What does the passage explain about things?", "What is')


def duplicates(text: str, attempt: int) -> Reply:
    first = questions_for(text)[0]
    return Reply(content=json.dumps([first, first, first.upper(), first.replace("?", " ?")]))


def rate_limited_first(times: int, retry_after_s: float = 0.2) -> Script:
    def script(text: str, attempt: int) -> Reply:
        if attempt <= times:
            return Reply(
                429,
                json.dumps(
                    {
                        "error": {
                            "message": "Rate limit reached",
                            "type": "requests",
                            "code": "rate_limit",
                        }
                    }
                ),
                {"Retry-After": f"{retry_after_s:g}"},
            )
        return valid_json(text, attempt)

    return script


def server_error_first(times: int) -> Script:
    def script(text: str, attempt: int) -> Reply:
        if attempt <= times:
            return Reply(
                500, json.dumps({"error": {"message": "upstream exploded", "type": "server_error"}})
            )
        return valid_json(text, attempt)

    return script


def slow_first(times: int, delay_s: float) -> Script:
    def script(text: str, attempt: int) -> Reply:
        reply = valid_json(text, attempt)
        if attempt <= times:
            reply.delay_s = delay_s
        return reply

    return script


class outage:
    """Every request answered 503 for `seconds`, starting after `after_requests` requests
    (an endpoint restarting); counts the requests it failed."""

    def __init__(self, after_requests: int, seconds: float, then: Script = valid_json) -> None:
        self.after_requests, self.seconds, self.then = after_requests, seconds, then
        self.seen = 0
        self.failed = 0
        self.started_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self, text: str, attempt: int) -> Reply:
        with self._lock:
            self.seen += 1
            now = time.monotonic()
            if self.started_at is None and self.seen > self.after_requests:
                self.started_at = now
            if self.started_at is not None and now - self.started_at < self.seconds:
                self.failed += 1
                body = {"error": {"message": "service unavailable", "type": "server_error"}}
                return Reply(503, json.dumps(body))
        return self.then(text, attempt)


def unauthorized(text: str, attempt: int) -> Reply:
    return Reply(
        401,
        json.dumps(
            {
                "error": {
                    "message": "Incorrect API key provided",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            }
        ),
    )


@dataclass
class LLMServer:
    url: str
    script: Script = valid_json
    latency_s: float = 0.0
    """Added to every request (benchmarks)."""
    requests_by_text: Counter[str] = field(default_factory=Counter)
    embedded_texts: int = 0
    embedding_dimension: int = 48
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total_requests(self) -> int:
        with self.lock:
            return sum(self.requests_by_text.values())

    def requests_for(self, text: str) -> int:
        with self.lock:
            return self.requests_by_text[text]

    def reset(self) -> None:
        with self.lock:
            self.requests_by_text.clear()

    def respond(self, body: dict[str, Any]) -> tuple[Reply, str]:
        text = passage_of(body)
        with self.lock:
            self.requests_by_text[text] += 1
            attempt = self.requests_by_text[text]
        return self.script(text, attempt), body.get("model", "test-model")


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 drops a burst of concurrent connections
    daemon_threads = True

    def __init__(self, state: LLMServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # Headers and body leave in two writes: with Nagle's algorithm on, the second waits
    # for the client's delayed ACK (tens of ms), which capped the benchmark's server.
    disable_nagle_algorithm = True

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:  # a client that went away mid-request (a killed test process)
            self._send(400, json.dumps({"error": {"message": "the body is not JSON"}}), {})
            return
        if self.path.endswith("/embeddings"):
            self._embeddings(body)
            return
        if not self.path.endswith("/chat/completions"):
            self._send(404, json.dumps({"error": {"message": "not found"}}), {})
            return
        reply, model = self.server.state.respond(body)
        delay = reply.delay_s + self.server.state.latency_s
        if delay:
            time.sleep(delay)
        if reply.status != 200:
            self._send(reply.status, reply.content or "{}", reply.headers)
            return
        content = (
            reply.content
            if reply.content is not None
            else json.dumps(questions_for(passage_of(body)))
        )
        prompt_tokens = sum(len(m["content"]) // 4 for m in body["messages"])
        completion_tokens = len(content) // 4
        payload = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        self._send(200, json.dumps(payload), reply.headers)

    def _embeddings(self, body: dict[str, Any]) -> None:
        """`/v1/embeddings`: the hashing embedder plays the model, so vectors are real."""
        from dmflow.embedding import HashingEmbedder

        if self.headers.get("Authorization") == "Bearer rejected-key":
            self._send(401, json.dumps({"error": {"message": "Incorrect API key"}}), {})
            return
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        with self.server.state.lock:
            self.server.state.embedded_texts += len(texts)
        vectors = HashingEmbedder(self.server.state.embedding_dimension).embed(texts)
        payload = {
            "object": "list",
            "model": body["model"],
            "data": [
                {"object": "embedding", "index": i, "embedding": v.tolist()}
                for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
        }
        self._send(200, json.dumps(payload), {})

    def _send(self, status: int, body: str, headers: dict[str, str]) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer


def start_llm_server() -> tuple[LLMServer, ThreadingHTTPServer]:
    state = LLMServer(url="")
    httpd = _Server(state)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    threading.Thread(target=httpd.serve_forever, name="llm-test-server", daemon=True).start()
    return state, httpd


if __name__ == "__main__":  # a server in its own process, for benchmarks:
    # python -m dmflow.testing.llm_server [latency_s]; prints its base URL
    import sys

    served, server = start_llm_server()
    served.latency_s = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    print(served.url, flush=True)
    threading.Event().wait()
