"""What may leave dmflow in an error, a log line, an event or an artifact.

Never a secret (a password in a connection URL, an API key, a JWT) and never document
text: a database error is reported by its class and primary message, without the
CONTEXT and DETAIL in which PostgreSQL quotes the row (the chunk's text) it failed on.
"""

from __future__ import annotations

import re

# user:password@ in any URL-ish string, also malformed ones (`postgres//u:p@h`), and the
# key=value password of a libpq connection string.
_URL_PASSWORD = re.compile(r"(?P<keep>[A-Za-z0-9._%+-]*:)(?P<secret>[^@\s/:]*)@")
_KV_PASSWORD = re.compile(r"(?i)(?P<keep>\bpassword\s*=\s*)(?P<secret>'[^']*'|\S+)")
_KEYS = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{6,}"  # OpenAI-style keys
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"  # JWTs (Supabase keys)
    r"|sb_(?:secret|publishable)_[A-Za-z0-9_-]{8,})"
)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

MAX_MESSAGE_CHARS = 500


def scrub(text: str, *secrets: str | None) -> str:
    """`text` without passwords, keys and the given secrets."""
    for secret in secrets:
        if secret:
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
