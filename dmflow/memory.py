"""Process memory that stays bounded over a long run (glibc's malloc; elsewhere these
settings do nothing)."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

M_ARENA_MAX = -8
"""glibc's `mallopt` parameter for the number of malloc arenas (malloc.h)."""
ARENAS = 2
"""At most this many malloc arenas, as `MALLOC_ARENA_MAX=2` would.

glibc gives each thread that allocates under contention an arena of its own (up to 8
per core) and keeps what is freed in it for that arena's reuse. A run's threads (the
database pool, `asyncio.to_thread` workers, Prefect's and deeplake's) thus held ~1.2 KB
of freed memory per chunk: +115 MiB over 100,000 chunks, +53 MiB with two arenas, and
faster (601 -> 645 chunks/s)."""
M_MMAP_THRESHOLD = -3
"""glibc's `mallopt` parameter: allocations this large or larger are mapped on their own."""
MMAP_THRESHOLD = 4 * 2**20
"""Buffers this large or larger are mapped on their own and unmapped when freed, for the
whole run.

glibc starts at 128 KiB, but raises the threshold to the size of each mapped block freed
(up to 32 MiB). Once deeplake had read and dropped one 16 MB storage chunk, every later
buffer under 16 MB (chunks, windows' arrays) came from the heap, where the small objects
made beside it kept its space from going back: the heap held 40-60 MiB free over a
1,000,000-chunk run. A threshold set stays fixed (and the heap's trim threshold at its
default). Not lower than 4 MiB: the process makes 1-4 MiB buffers often enough that
mapping each cost a fifth more CPU (256 KiB or 1 MiB: 53 s against 44 s for a set of
flow tests)."""


def keep_malloc_bounded() -> None:
    """Both settings above; a value set in the environment (`MALLOC_ARENA_MAX`,
    `MALLOC_MMAP_THRESHOLD_`, or `GLIBC_TUNABLES`) is kept."""
    mallopt = _mallopt()
    if mallopt is None:
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "MALLOC_ARENA_MAX" not in os.environ and "arena_max" not in tunables:
        mallopt(M_ARENA_MAX, ARENAS)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and "mmap_threshold" not in tunables:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def _mallopt() -> Callable[[int, int], int] | None:
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: libc's among them
    except (OSError, AttributeError):
        return None  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt
