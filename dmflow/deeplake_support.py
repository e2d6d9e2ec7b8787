"""Importing deeplake 3.9 without it phoning home, and without its pickle fallback.

`import deeplake` asks PyPI for a newer version (a 2 s timeout offline) and
turns telemetry on unless told otherwise; its telemetry would also carry our
training queries. Opening a dataset whose `version_control_info.json` is missing,
deeplake unpickles `version_control_info` instead: a crafted dataset (a local
directory, a hub:// dataset someone else can write) would run its code in our
process. Import it only through `import_deeplake()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import SecretStr

from dmflow.errors import DmflowError


def _skip_version_check() -> None:
    """deeplake's import asks PyPI for a newer version (a network lookup, 2 s offline)
    unless a cache under HOME is fresh, and HOME may be unwritable or missing. Its
    checker module is given in advance, doing nothing: we pin 3.9 on purpose (Deep
    Memory), and no lookup happens whatever HOME is."""
    name = "deeplake.util.check_latest_version"
    if name not in sys.modules:
        checker = ModuleType(name)
        checker.warn_if_update_required = lambda current_version: None  # type: ignore[attr-defined]
        sys.modules[name] = checker


REPORTING_CONFIG = Path("~/.activeloop/reporting_config.json")
"""deeplake's consent file: created with consent *on* at its first import if missing."""


_importing = threading.Lock()
"""One import at a time: a second thread must not see deeplake half-imported, nor the
first one's temporary HOME and nest_asyncio stand-in."""


def import_deeplake() -> ModuleType:
    with _importing:
        os.environ["BUGGER_OFF"] = "yes"  # humbug's opt-out, read on every report
        _skip_version_check()
        if "deeplake" not in sys.modules:
            with _a_home_that_exists(), _asyncio_left_as_it_is():
                _refuse_reporting_consent()
                import deeplake  # noqa: F401
        _refuse_pickled_version_info()
        return sys.modules["deeplake"]


def start_importing_deeplake() -> None:
    """Import deeplake in a background thread, for a process that will open a dataset
    soon: its ~1 s import then overlaps the waits before that (the Prefect server
    creating the flow run). A failure is left to the import that needs the module,
    which reports it."""

    def quietly() -> None:
        with contextlib.suppress(Exception):  # the import that needs it reports it
            import_deeplake()

    threading.Thread(target=quietly, name="dmflow-import-deeplake", daemon=True).start()


@contextmanager
def _asyncio_left_as_it_is() -> Iterator[None]:
    """deeplake's S3 module calls `nest_asyncio.apply()` at import (for notebooks), which
    swaps every event loop's step and asyncio's C Task for pure-Python ones in the whole
    process: the generation phase's tasks ran ~60 % slower. Its one use, S3 writes, runs
    its own loop in a thread that has none, as dmflow calls deeplake, so it is not
    needed here."""
    try:
        import nest_asyncio
    except ImportError:
        yield
        return
    apply = nest_asyncio.apply
    nest_asyncio.apply = lambda loop=None: None
    try:
        yield
    finally:
        nest_asyncio.apply = apply


@contextmanager
def _a_home_that_exists() -> Iterator[None]:
    """deeplake's import creates ~/.activeloop, parents and all (a service account
    without a home, root with HOME unset): where HOME does not exist, its files go to
    a private directory of the process instead, and HOME is left as it was."""
    home = os.environ.get("HOME")
    if home and Path(home).is_dir():
        yield
        return
    os.environ["HOME"] = tempfile.mkdtemp(prefix="dmflow-deeplake-home-")
    try:
        yield
    finally:
        if home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = home


class UnsafeDataset(DmflowError):
    """A dataset that could only be opened by unpickling part of it."""


class _NoUnpickling:
    """Stands in for `pickle` in deeplake's version control module: the one place it
    unpickles what a dataset holds (datasets older than deeplake 3.0's JSON format)."""

    @staticmethod
    def loads(data: bytes, /, **_: Any) -> Any:
        raise UnsafeDataset(
            "the dataset has no version_control_info.json, only a pickled version file "
            "that dmflow will not unpickle (it can run code): re-save the dataset with "
            "deeplake 3.9, or check where it came from"
        )


def _refuse_pickled_version_info() -> None:
    from deeplake.util import version_control

    version_control.pickle = _NoUnpickling


def refuse_unsafe_local_dataset(path: str) -> None:
    """A local dataset without `version_control_info.json` is refused before deeplake
    opens it (with its own words, not deeplake's)."""
    if "://" in path:
        return  # remote: the guard in deeplake's import refuses it when it is read
    root = Path(path)
    is_dataset = root.is_dir() and (root / "dataset_meta.json").exists()
    if is_dataset and not (root / "version_control_info.json").is_file():
        raise UnsafeDataset(
            f"dataset {path} has no version_control_info.json, only what deeplake "
            "would unpickle (which can run code): dmflow refuses to open it; re-save "
            "it with deeplake 3.9, or check where it came from"
        )


def _refuse_reporting_consent() -> None:
    """Write the consent file, consent off, before deeplake's import writes it with
    consent on. An existing file is left alone: its owner chose."""
    path = REPORTING_CONFIG.expanduser()
    if path.exists():
        return
    try:
        # ~/.activeloop only: a HOME that does not exist is not dmflow's to create.
        path.parent.mkdir(mode=0o700, exist_ok=True)
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

    refuse_unsafe_local_dataset(path)
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


def drop_chunks_read_before(dataset: Any) -> None:
    """Drop from `dataset`'s memory cache every storage chunk but the one each tensor
    was read from last.

    For a reader that walks the dataset in order: deeplake keeps every chunk read until
    its cache is full, so a whole cache of chunks never read again stayed in memory for
    the rest of the run (the cache's size was what a large run grew by). deeplake 3.9's
    cache has no public way to drop one key; `tests/test_chunk_source.py` fails if its
    `lru_sizes` and `_del_item_from_cache` change."""
    cache = dataset.storage
    newest: dict[str, str] = {}
    stale: list[str] = []
    for key in list(getattr(cache, "lru_sizes", ())):  # least recently used first
        tensor, marker, _ = key.partition("/chunks/")
        if not marker:
            continue  # metadata and encoders: small, and read again on every window
        if tensor in newest:
            stale.append(newest[tensor])
        newest[tensor] = key
    for key in stale:
        cache._del_item_from_cache(key)
