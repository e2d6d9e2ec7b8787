"""Importing deeplake 3.9 without it phoning home.

`import deeplake` asks PyPI for a newer version (a 2 s timeout offline) and
turns telemetry on unless told otherwise; its telemetry would also carry our
training queries. Import it only through `import_deeplake()`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import SecretStr


def _seed_version_check_cache() -> None:
    # deeplake skips the PyPI request while this cache is less than a day old, and
    # warns when it names a newer version: we pin 3.9 on purpose (Deep Memory).
    cache = Path("~/.activeloop/pypi_version.json").expanduser()
    installed = importlib.metadata.version("deeplake")
    try:
        if cache.is_file():
            cached_version, saved_at = json.loads(cache.read_text())
            if cached_version == installed and time.time() - saved_at < 12 * 3600:
                return
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps([installed, time.time()]))
    except (OSError, ValueError, TypeError):
        pass  # an unwritable home only costs the 2 s check


REPORTING_CONFIG = Path("~/.activeloop/reporting_config.json")
"""deeplake's consent file: created with consent *on* at its first import if missing."""


def import_deeplake() -> ModuleType:
    os.environ["BUGGER_OFF"] = "yes"  # humbug's opt-out, read on every report
    _refuse_reporting_consent()
    _seed_version_check_cache()
    import deeplake

    module: ModuleType = deeplake
    return module


def _refuse_reporting_consent() -> None:
    """Write the consent file, consent off, before deeplake's import writes it with
    consent on. An existing file is left alone: its owner chose."""
    path = REPORTING_CONFIG.expanduser()
    if path.exists():
        return
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(json.dumps({"consent": False, "client_id": str(uuid.uuid4())}))
    except OSError:
        pass  # BUGGER_OFF still keeps this process quiet


def point_at_activeloop(endpoint: str) -> None:
    """Send deeplake's backend calls to `endpoint` (a proxy, a test server) instead of
    app.activeloop.ai. Its client reads this module constant on every request."""
    import deeplake.client.client as backend

    backend.HUB_REST_ENDPOINT = endpoint.rstrip("/")


def keep_telemetry_off() -> None:
    """deeplake's client turns reporting consent on for every user it signs in; undo that,
    so a later deeplake use without BUGGER_OFF does not send what it reports."""
    from deeplake.util.bugout_reporter import save_reporting_config

    save_reporting_config(False)


def load_read_only(
    path: str, token: SecretStr | None = None, *, memory_cache_mb: int | None = None
) -> Any | None:
    """The DeepLake dataset at `path`, opened read-only; None when there is none.

    `memory_cache_mb`: deeplake's in-memory chunk cache (its default: 256 MB). A reader
    that streams the dataset once gains nothing from it, and it grows with the dataset
    up to that size (seen as ~1.6 KB per chunk read)."""
    deeplake = import_deeplake()
    from deeplake.util.exceptions import DatasetHandlerError

    try:
        return deeplake.load(
            path,
            read_only=True,
            verbose=False,
            token=token.get_secret_value() if token is not None else None,
            **({"memory_cache_size": memory_cache_mb} if memory_cache_mb is not None else {}),
        )
    except DatasetHandlerError:
        return None
