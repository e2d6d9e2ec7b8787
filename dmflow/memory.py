"""Process memory that stays bounded over a long run."""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8
"""glibc's `mallopt` parameter for the number of malloc arenas (malloc.h)."""
ARENAS = 2


def limit_malloc_arenas() -> None:
    """At most `ARENAS` malloc arenas in this process, as `MALLOC_ARENA_MAX=2` would.

    glibc gives each thread that allocates under contention an arena of its own (up to 8
    per core) and keeps what is freed in it for that arena's reuse. A run's threads
    (the database pool, `asyncio.to_thread` workers, Prefect's and deeplake's) thus held
    ~1.2 KB of freed memory per chunk: +115 MiB over 100,000 chunks, +53 MiB with two
    arenas, and faster (601 -> 645 chunks/s). A value set in the environment is kept;
    elsewhere than glibc this does nothing.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: libc's among them
    except (OSError, AttributeError):
        return  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(M_ARENA_MAX, ARENAS)
