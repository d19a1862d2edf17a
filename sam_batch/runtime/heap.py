"""Keep a long job's driver from growing with glibc's per-thread heaps.

A driver that runs a night's job does little allocating of its own, but Ray's
core worker in it runs a dozen C++ threads (gRPC, event loops) that each
allocate and free small blocks for every call. glibc gives each such thread an
arena of its own, and an arena keeps the pages of its freed blocks wherever a
live block sits beside them: the driver's resident memory ratchets up with the
calls made, though what it holds stays flat (``bench/soak.py --diagnose``
shows RSS rising while glibc's bytes in use do not). One arena for the whole
process, trimmed now and then, gives the freed pages back.

Only the driver is touched: actors and tasks are other processes, and a user
who set ``MALLOC_ARENA_MAX`` keeps it. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import threading

log = logging.getLogger("sam_batch")

#: Arenas for the driver: its threads mostly wait, so one lock costs nothing.
ARENAS = 1
#: Seconds between trims of the heap (each takes about a millisecond).
TRIM_EVERY_S = 10.0
_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # Once: each ``CDLL`` makes a class of its own and a reference cycle, garbage that
    # a trim every few seconds would leave for the collector all night.
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def cap_arenas(arenas: int = ARENAS) -> bool:
    """Limit this process to ``arenas`` malloc arenas; True if the limit was set.

    It must run before the threads that would take arenas of their own first
    allocate (before ``ray.init``): threads already bound keep their arena.
    """
    libc = _libc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give the pages of freed blocks back to the system; True if any went back."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


class HeapTrimmer:
    """A thread trimming the heap every ``every_s`` seconds until ``stop``."""

    def __init__(self, every_s: float = TRIM_EVERY_S):
        self.every_s = every_s
        self.trims = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if _libc() is not None:
            self._thread = threading.Thread(target=self._run, name="sam-batch-heap-trim",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            trim()
            self.trims += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
