"""The driver's heap: one glibc arena for every thread, and a trimmer that stops."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
import textwrap
import time

import pytest

from sam_batch.runtime import heap

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")

#: Starts threads that each allocate through malloc, then prints glibc's arena count.
_ARENAS = textwrap.dedent("""
    import ctypes, sys, tempfile, threading
    from sam_batch.runtime import heap
    if sys.argv[1] == "cap":
        assert heap.cap_arenas(1)
    def work():
        blocks = [bytes(100_000 + i) for i in range(20)]  # past pymalloc: malloc's
        del blocks
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        fp = libc.fopen(f.name.encode(), b"w")
        libc.malloc_info(0, ctypes.c_void_p(fp))
        libc.fclose(ctypes.c_void_p(fp))
        print(open(f.name).read().count("<heap nr="))
""")


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", _ARENAS, mode], env=env, check=True,
                         capture_output=True, text=True)
    return int(out.stdout.strip())


@glibc
def test_cap_arenas_keeps_every_thread_in_one_arena():
    assert _arenas("free") > 1  # glibc's default: an arena per allocating thread
    assert _arenas("cap") == 1


def test_cap_arenas_leaves_a_users_setting(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert heap.cap_arenas() is False


@glibc
def test_trimmer_trims_until_stopped():
    trimmer = heap.HeapTrimmer(every_s=0.01)
    try:
        for _ in range(500):
            if trimmer.trims >= 2:
                break
            time.sleep(0.01)
    finally:
        trimmer.stop()
    assert trimmer.trims >= 2
    assert trimmer._thread is not None and not trimmer._thread.is_alive()
    done = trimmer.trims
    time.sleep(0.05)
    assert trimmer.trims == done



@glibc
def test_trimming_leaves_no_garbage_for_the_collector():
    """A trim every few seconds all night must not make reference cycles (a fresh
    ``ctypes.CDLL`` each time did: a class per trim, freed only by a full collection)."""
    heap.trim()
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            heap.trim()
        found = gc.collect()
    finally:
        gc.enable()
    assert found == 0
