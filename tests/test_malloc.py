"""What malloc keeps of freed memory in a dmflow process stays bounded.

Two ways it did not: glibc gives threads arenas of their own and keeps what they free
for reuse there (over a 100,000-chunk run that held 115 MiB; 53 MiB with two arenas),
and once a 16 MB storage chunk was dropped, smaller buffers came from the heap, whose
freed space the small objects made beside them kept (40-60 MiB over 1,000,000 chunks).
Each probe runs in a fresh process, with and without importing dmflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ARENAS_PROBE = """
import ctypes, sys, tempfile, threading
if sys.argv[1] == "dmflow":
    import dmflow  # noqa: F401
barrier = threading.Barrier(16)
def work():
    held = bytes(100_000)  # a first allocation: the thread's arena
    barrier.wait()
    for _ in range(50):
        [bytes(1000) for _ in range(200)]
threads = [threading.Thread(target=work) for _ in range(16)]
for thread in threads: thread.start()
for thread in threads: thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile(mode="r") as report:
    handle = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    print(report.read().count("<heap nr="))
"""


HEAP_PROBE = """
import ctypes, sys
if sys.argv[1] == "dmflow":
    import dmflow  # noqa: F401
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    ).split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
chunk = bytearray(16_000_000)  # a storage chunk, read and dropped
del chunk
window = bytearray(8_000_000)  # a text chunk: mapped on its own, or in the heap
print(libc.mallinfo2().hblkhd >= 8_000_000)
"""


def _probe(probe: str, importing: str) -> str:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
    }
    done = subprocess.run(
        [sys.executable, "-c", probe, importing],
        cwd=Path(__file__).parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_a_process_that_imports_dmflow_keeps_two_malloc_arenas() -> None:
    without = int(_probe(ARENAS_PROBE, "plain"))
    if without <= 2:
        pytest.skip("this libc gives threads no arenas of their own: nothing to limit")
    assert int(_probe(ARENAS_PROBE, "dmflow")) == 2, f"{without} arenas without dmflow"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_buffers_made_after_a_large_chunk_is_dropped_are_still_mapped_on_their_own() -> None:
    """A buffer mapped on its own goes back to the system when freed; one in the heap
    leaves a hole there while anything made after it lives."""
    if _probe(HEAP_PROBE, "plain") != "False":
        pytest.skip("this libc maps large buffers on their own anyway: nothing to fix")
    assert _probe(HEAP_PROBE, "dmflow") == "True"
