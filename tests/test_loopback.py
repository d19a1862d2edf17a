"""An embedded Ray exposes nothing: every process a local job starts listens on loopback.

The job runs as a user's would, in a process of its own with none of the test
suite's Ray settings in its environment, on whatever interfaces the machine has.
While it runs, the test lists the listening sockets of every process below it
(GCS, raylet, agents, workers, the actor) and fails on any address that is not
loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from sam_batch.synthetic import write_sample

pytestmark = pytest.mark.slow

# The suite sets this for the Ray it starts in-process (conftest.py); the job
# under test must show that sam_batch sets it by itself.
_RAY_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _listening(root: psutil.Process) -> set[tuple[str, str, int]]:
    """(process name, host, port) of every listening socket of root and below it.

    One system-wide listing per call (reading each process's sockets apart costs
    a parse of the kernel's tables per process, which slows the job it watches).
    """
    names: dict[int, str] = {}
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # exited between listing and asking
            names[proc.pid] = proc.name()
    found = set()
    for conn in psutil.net_connections(kind="inet"):
        listens = conn.status == psutil.CONN_LISTEN
        if conn.pid in names and (listens or (conn.type == socket.SOCK_DGRAM and conn.laddr)):
            found.add((names[conn.pid], conn.laddr.ip, conn.laddr.port))
    return found


def test_an_embedded_ray_listens_on_loopback_only(tmp_path):
    _, manifest = write_sample(tmp_path, num_frames=40, width=96, height=64)
    env = {k: v for k, v in os.environ.items() if k not in (_RAY_LOCAL_ONLY, "RAY_ADDRESS")}
    script = (
        "import sys\nfrom sam_batch.cli import main\n"
        f"sys.exit(main(['run', '--manifest', {str(manifest)!r}, '--output', "
        f"{str(tmp_path / 'out')!r}, '--random-weights', '--image-size', '128', "
        "'--chunk-frames', '8', '--workers', '1', '--progress', 'off']))\n"
    )
    job = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    seen: set[tuple[str, str, int]] = set()
    try:
        root = psutil.Process(job.pid)
        deadline = time.monotonic() + 300
        while job.poll() is None and time.monotonic() < deadline:
            seen.update(_listening(root))
            time.sleep(0.5)
        out, _ = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, out
    names = {name for name, _, _ in seen}
    # The listing saw the job's Ray while it ran, not an empty tree after it ended.
    assert {"gcs_server", "raylet"} <= names, sorted(names)
    assert any(name.startswith("ray::") for name in names), sorted(names)
    exposed = sorted((name, host, port) for name, host, port in seen if not _is_loopback(host))
    assert not exposed, f"listening beyond loopback: {exposed}"
