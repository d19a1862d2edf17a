"""Notice that the Ray cluster's head is gone, and end the job cleanly.

When the head node (its GCS) goes away, nothing in Ray tells the driver at once:
chunks already running may finish, a dead actor is replaced by one that never
starts (the driver blocks creating it), and ``ray.wait`` just times out. Ray's own
reaction comes after ``gcs_rpc_server_reconnect_timeout_s`` (60 s by default): it
ends the driver process with exit code 1 and no word of what to do.

``ClusterWatch`` probes the GCS port from a thread. Once the GCS has not answered
for ``grace_s``, the scheduler's loop raises ``ClusterLostError`` (a
``SamBatchError``: ``sam-batch run`` prints it and exits 2). A driver blocked in
a Ray call never gets back to its loop, so ``exit_after_s`` later the watch
prints the same message and ends the process with exit code 2 itself, as Ray
would have (with 1) a little later. Whatever was committed stays committed: the
same command, run again, resumes the job.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time

import ray

from sam_batch.errors import ClusterLostError

log = logging.getLogger("sam_batch")

#: Seconds the GCS may stay unreachable before the job stops.
GRACE_S = 10.0
#: Seconds after that before the process ends itself (grace + this stays well
#: inside Ray's own 60 s).
EXIT_AFTER_S = 10.0
#: Seconds between probes.
EVERY_S = 1.0


class ClusterWatch:
    """A thread probing the GCS (a TCP connect to its port) while a job runs."""

    def __init__(self, grace_s: float = GRACE_S, exit_after_s: float = EXIT_AFTER_S,
                 every_s: float = EVERY_S):
        self.grace_s, self.exit_after_s, self.every_s = grace_s, exit_after_s, every_s
        self.address: str | None = None
        if ray.is_initialized():
            try:
                self.address = ray.get_runtime_context().gcs_address
            except Exception:  # no GCS address to watch: nothing to check
                self.address = None
        self.error: ClusterLostError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.address:
            self._thread = threading.Thread(target=self._run, name="sam-batch-cluster-watch",
                                            daemon=True)
            self._thread.start()

    @property
    def lost(self) -> bool:
        return self.error is not None

    def check(self) -> None:
        """Raise ``ClusterLostError`` once the cluster is lost (from the driver's loop)."""
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """The job ended otherwise: stop probing (a lost cluster keeps the exit armed)."""
        if not self.lost:
            self._stop.set()

    def _run(self) -> None:
        since: float | None = None
        while not self._stop.wait(self.every_s):
            assert self.address is not None
            why = _probe(self.address)
            if why is None:
                if since is not None:
                    log.warning("the Ray head (GCS at %s) answers again", self.address)
                since = None
                continue
            now = time.monotonic()
            if since is None:
                since = now
                log.warning("the Ray head (GCS at %s) does not answer: %s", self.address, why)
            if now - since >= self.grace_s:
                break
        else:
            return
        self.error = ClusterLostError(
            f"lost the Ray cluster: its head (GCS at {self.address}) has not answered for "
            f"{self.grace_s:.0f} s ({why}). The chunks committed so far are kept: run the same "
            "command again (on a new cluster) to resume the job")
        log.error("%s", self.error)
        time.sleep(self.exit_after_s)  # the driver's loop raises it, if not blocked in Ray
        print(f"sam-batch: error: {self.error}", file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(2)


def _probe(address: str, timeout_s: float = 2.0) -> str | None:
    """None if something accepts connections at ``host:port``, else why not."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return None
    except OSError as e:
        return e.strerror or type(e).__name__
