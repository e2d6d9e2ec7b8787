"""`ChatEndpoint`: one POST to an OpenAI-compatible `/chat/completions`, over aiohttp.

The openai SDK spent ~7 ms of CPU a request on this machine (request models, header
building, response wrappers): with 64 chunks asked at once it, not the endpoint, was
the limit (57 % of the ideal rate at 64, 25 % at 128, where a bare aiohttp client
gets 95 %). What the generator needs of a request is small: send the body, get the
reply's JSON, or a typed failure with the endpoint's status, its own words and its
`Retry-After`. That is all this does.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from pydantic import SecretStr
from yarl import URL

OPENAI_BASE_URL = "https://api.openai.com/v1"


class ChatRequestFailed(Exception):
    """The request got no reply: it could not connect, or the connection broke."""


class ChatRequestTimedOut(ChatRequestFailed):
    """No complete reply within the timeout."""


class ChatStatusError(Exception):
    """The endpoint answered with an error status."""

    def __init__(self, status: int, message: str, retry_after_s: float | None) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.retry_after_s = status, message, retry_after_s


class ChatEndpoint:
    """Requests to one endpoint share a connection pool, opened when the first caller
    enters (`async with endpoint:`) and closed when the last one in flight leaves, so
    nothing outlives the event loop that used it."""

    def __init__(
        self, base_url: str | None, api_key: SecretStr, timeout_s: float, connections: int
    ) -> None:
        self.url = (base_url or OPENAI_BASE_URL).rstrip("/") + "/chat/completions"
        self._headers = {
            "Authorization": f"Bearer {api_key.get_secret_value()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._users = 0
        self._proxy: URL | None = None
        self._proxy_auth: aiohttp.BasicAuth | None = None

    async def __aenter__(self) -> ChatEndpoint:
        if self._session is None:
            # HTTPS_PROXY / NO_PROXY are honoured, as the SDK did, but read here, once:
            # aiohttp's trust_env reads them and ~/.netrc on every request, a tenth of
            # the CPU a request cost.
            try:
                self._proxy, self._proxy_auth = get_env_proxy_for_url(URL(self.url))
            except LookupError:
                self._proxy, self._proxy_auth = None, None
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections), timeout=self._timeout
            )
        self._users += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._users -= 1
        if self._users == 0 and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The reply's JSON object. Raises `ChatStatusError` for an error status,
        `ChatRequestTimedOut` or `ChatRequestFailed` when no reply came, `ValueError`
        when the reply is not a JSON object."""
        if self._session is None:
            raise RuntimeError("use `async with endpoint:` around requests")
        data = json.dumps(body).encode()
        try:
            async with self._session.post(
                self.url,
                data=data,
                headers=self._headers,
                proxy=self._proxy,
                proxy_auth=self._proxy_auth,
            ) as reply:
                raw = await reply.read()
                if reply.status >= 400:
                    raise ChatStatusError(
                        reply.status, _message_of(raw, reply.reason), _retry_after(reply.headers)
                    )
        except TimeoutError:
            raise ChatRequestTimedOut("no reply in time") from None
        except aiohttp.ClientError as exc:
            raise ChatRequestFailed(f"{type(exc).__name__}: {exc}") from None
        parsed = json.loads(raw)
        if not isinstance(parsed, dict):
            raise ValueError("the reply is not a JSON object")
        return parsed


def _message_of(raw: bytes, reason: str | None) -> str:
    """The endpoint's own words for an error: OpenAI's `{"error": {"message": ...}}`,
    another server's `{"error": "..."}` or `{"message": ...}`, else its text."""
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip() or reason or "no message"
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return text.strip() or reason or "no message"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    if value := headers.get("retry-after-ms"):
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())
