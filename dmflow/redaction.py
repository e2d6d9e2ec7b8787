"""What may leave dmflow in an error, a log line, an event or an artifact.

Never a secret (a password in a connection URL, an API key, a JWT) and never document
text: a database error is reported by its class and primary message, without the
CONTEXT and DETAIL in which PostgreSQL quotes the row (the chunk's text) it failed on.
Secrets are removed by shape (what looks like a key or a URL's password) and by value:
every secret dmflow is configured with is remembered when its settings are read, so an
endpoint that echoes a key of any shape (`gsk_...`, a bare token) is scrubbed too.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

# user:password@ in any URL-ish string, also malformed ones (`postgres//u:p@h`), and the
# key=value password of a libpq connection string.
_URL_PASSWORD = re.compile(r"(?P<keep>[A-Za-z0-9._%+-]*:)(?P<secret>[^@\s/:]*)@")
_URL_WHOLE_PASSWORD = re.compile(
    r"^[a-z][a-z0-9+.-]*(?::/*|/+)[^:@/]*:(?P<secret>.+)@[^@]*$", re.IGNORECASE | re.DOTALL
)
_KV_PASSWORD = re.compile(r"(?i)(?P<keep>\bpassword\s*=\s*)(?P<secret>'[^']*'|\S+)")
_KEYS = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{6,}"  # OpenAI-style keys
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"  # JWTs (Supabase keys)
    r"|sb_(?:secret|publishable)_[A-Za-z0-9_-]{8,})"
)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

MAX_MESSAGE_CHARS = 500
MIN_SECRET_CHARS = 6
"""Shorter values are not remembered: scrubbing `none` or `test` everywhere would
mangle messages, and a secret that short protects nothing anyway."""

_remembered: tuple[str, ...] = ()
_remembering = threading.Lock()


def remember_secret(value: str | None) -> None:
    """Scrub `value`, and its URL-encoded and URL-decoded forms, from every text that
    `scrub` cleans from now on, in this process."""
    global _remembered
    if not value:
        return
    forms = {
        value,
        urllib.parse.unquote(value),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
    }
    with _remembering:
        known = set(_remembered) | {f for f in forms if len(f) >= MIN_SECRET_CHARS}
        # Longest first: a secret containing another is removed whole.
        _remembered = tuple(sorted(known, key=len, reverse=True))


def remember_connection_secrets(conninfo: str | None) -> None:
    """The password of a connection URL or libpq string, as written and decoded."""
    if not conninfo:
        return
    # user:password@host, the password as written up to the last @ (spaces, bad
    # percent escapes and all: libpq quotes it back that way in its errors).
    text = conninfo.strip()
    whole = _URL_WHOLE_PASSWORD.match(text)
    if whole:
        remember_secret(whole["secret"])
        # A URL libpq cannot parse is read as key=value words, and its errors quote the
        # word they stopped at: every word holding part of the password is secret too.
        start, end = whole.span("secret")
        for word in re.finditer(r"\S+", text):
            if word.start() < end and word.end() > start:
                remember_secret(word[0])
    for match in _URL_PASSWORD.finditer(conninfo):
        remember_secret(match["secret"])
    for match in _KV_PASSWORD.finditer(conninfo):
        remember_secret(match["secret"].strip("'"))


def scrub(text: str, *secrets: str | None) -> str:
    """`text` without passwords, keys, the given secrets and every remembered one."""
    for secret in (*secrets, *_remembered):
        if secret and secret in text:
            text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(lambda m: m["keep"] + "***@" if m["secret"] else m[0], text)
    text = _KV_PASSWORD.sub(lambda m: m["keep"] + "***", text)
    return _KEYS.sub("***", text)


def storable(text: str) -> str:
    """`text` without what PostgreSQL cannot store in a text column: NUL characters and
    lone surrogates (which come from bad bytes decoded with `surrogateescape`)."""
    return _UNSTORABLE.sub("", text)


def describe(exc: BaseException) -> str:
    """`Type: message` for a person and for the run's `error_message`: scrubbed, one
    paragraph, a database error by its primary message only."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    # Without a diagnostic, cut where psycopg (and others) start CONTEXT and DETAIL.
    message = primary or str(exc).strip().split("\nCONTEXT:")[0].split("\nDETAIL:")[0]
    message = scrub(" ".join(message.split()))[:MAX_MESSAGE_CHARS]
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


class ScrubbedArgument:
    """A log record's argument, formatted scrubbed; `original` for filters that format
    it their own way (they scrub what they make)."""

    def __init__(self, original: object) -> None:
        self.original = original

    def __str__(self) -> str:
        return scrub(str(self.original))

    def __repr__(self) -> str:
        return scrub(repr(self.original))


class _ScrubbedRecords:
    """Wraps the log record factory: every record's message and traceback text is
    scrubbed when the record is made, whichever logger or handler it goes to (the
    terminal, Prefect's API log handler, a file)."""

    def __init__(self, make: Callable[..., logging.LogRecord]) -> None:
        self.make = make

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's to report, not ours
            return record
        if scrub(message) != message:
            record.msg = scrub(str(record.msg))
            if isinstance(record.args, tuple):
                record.args = tuple(
                    arg if isinstance(arg, int | float) else ScrubbedArgument(arg)
                    for arg in record.args
                )
            elif record.args:
                record.msg, record.args = scrub(message), ()
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub(text)
        return record


def scrub_every_log_record() -> None:
    """Install the scrubbing record factory once per process."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _ScrubbedRecords):
        logging.setLogRecordFactory(_ScrubbedRecords(current))
