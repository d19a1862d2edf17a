"""A ``ray start --head`` cluster of a test's own, on 127.0.0.1, ended by PID.

Each head gets a short temp dir of its own (Ray's Unix sockets live under it,
and socket paths are short) that marks every process of that head: they are
found by it (``pids_with``) and killed one by one, never by name, so a test
ends its own cluster and no other. Token auth, as Ray enables it, with the
test's own token (``token_env``): ``ray start`` refuses to make one, and
``~/.ray/auth_token`` exists only where an earlier ``ray.init()`` wrote it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Head:
    address: str  # host:port of the GCS, what ``--address`` takes
    temp: Path  # the head's --temp-dir: every one of its processes names it
    dashboard: str | None  # http://host:port of the job server, when started with one


def token_env(**extra: str) -> dict[str, str]:
    """This process's environment with a fresh Ray auth token of the test's own."""
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
            **extra}


@contextlib.contextmanager
def ray_head(env: dict[str, str], dashboard: bool = False) -> Iterator[Head]:
    """A one-node head with 2 CPUs and no GPU; ``dashboard``: with the job server."""
    temp = Path(tempfile.mkdtemp(prefix="sbray", dir="/tmp"))  # short: sockets live under it
    port = free_port()
    flags = ["--include-dashboard=false"]
    url = None
    if dashboard:
        dash = free_port()
        flags = [f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
                 "--include-dashboard=true"]
        url = f"http://127.0.0.1:{dash}"
    try:
        start = subprocess.run(
            ["ray", "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", *flags,
             f"--temp-dir={temp}", "--num-cpus=2", "--num-gpus=0", "--disable-usage-stats"],
            capture_output=True, text=True, timeout=180, env=env)
        assert start.returncode == 0, start.stderr[-3000:]
        yield Head(f"127.0.0.1:{port}", temp, url)
    finally:
        for pid in pids_with(temp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        shutil.rmtree(temp, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_with(path: Path) -> list[int]:
    """Processes whose command line or open files name ``path`` (Ray renames its agents)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if str(path) in cmd or any(f.startswith(str(path)) for f in _open_files(entry)):
                found.append(int(entry))
    return found


def _open_files(pid: str) -> list[str]:
    names = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            names.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return names
