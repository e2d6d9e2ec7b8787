"""One `Settings` and one `RunStore` per process, shared by flows, hooks and the CLI.

Opening a store is not free: with the embedded database it takes a file lock, a
`pg_ctl` call, new connections and a migrations pass. So the process opens it once
and every flow, subflow and hook of that process uses the same one.

Both follow the environment: when a `DMFLOW_*` variable changes (a test, a script
switching databases), the next call reads the settings again, and a store is kept
per database it points at.
"""

from __future__ import annotations

import atexit
import os
import threading

from pydantic import ValidationError

from dmflow.errors import ConfigurationError
from dmflow.settings import Settings
from dmflow.store.base import RunStore

_lock = threading.RLock()
_settings: tuple[tuple[tuple[str, str], ...], Settings] | None = None
_stores: dict[tuple[str | None, ...], RunStore] = {}


def _environment() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("DMFLOW_")))


def settings() -> Settings:
    """The process's settings, read again only when the `DMFLOW_*` environment changed."""
    global _settings
    environment = _environment()
    with _lock:
        if _settings is None or _settings[0] != environment:
            _settings = (environment, read_settings())
        return _settings[1]


def read_settings() -> Settings:
    """`Settings()`, with a wrong value reported as the variable to fix and what it allows
    (never the value itself: it may be a secret)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"DMFLOW_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None


def _store_key(config: Settings) -> tuple[str | None, ...]:
    secret = config.database_url.get_secret_value() if config.database_url else None
    key = config.supabase_key.get_secret_value() if config.supabase_key else None
    return (secret, config.supabase_url, key, str(config.resolved_data_dir()))


def store() -> RunStore:
    """The process's store for the current settings, opened (and the embedded database
    started and migrated) on first use."""
    from dmflow.database import open_store

    config = settings()
    key = _store_key(config)
    with _lock:
        if key not in _stores:
            _stores[key] = open_store(config)
        return _stores[key]


def close_all() -> None:
    """Close every store this process opened (at exit, or between tests)."""
    with _lock:
        opened = list(_stores.values())
        _stores.clear()
    for opened_store in opened:
        opened_store.close()


atexit.register(close_all)
