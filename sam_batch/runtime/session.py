"""Connect to a Ray cluster, or start an embedded one that listens on loopback only."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import ray
from ray._private import ray_constants

from sam_batch.runtime.heap import HeapTrimmer, cap_arenas

log = logging.getLogger("sam_batch")

#: Ray's switch between a local-only instance and a node of a cluster. Off, every
#: process of the instance (GCS, raylet, agents, workers) takes 127.0.0.1 as the
#: node's address and binds there; on (Ray's default on Linux), ``ray.init`` turns
#: a 127.0.0.1 node address into the machine's own and binds GCS, raylet and
#: workers to every interface. The children read the variable; this process
#: read it when Ray was imported, so its copy is switched too.
_LOCAL_ONLY_VAR = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None = None,
                num_gpus: int | None = None) -> Iterator[None]:
    """With an address (or ``RAY_ADDRESS``): that cluster. Without: a local Ray.

    The embedded Ray listens on 127.0.0.1 only, every process of it: a laptop or
    a cloud VM running a local job exposes nothing, and on hosts that block
    traffic to their own address it is the only address that works. A Ray
    already initialised by the caller is used as it is and left running.

    The driver's heap is held to one arena and trimmed while the session lasts
    (``runtime/heap.py``): a job of thousands of videos must not grow the driver.
    """
    if ray.is_initialized():
        yield
        return
    cap_arenas()  # before ray.init starts the core worker's threads
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    else:
        init_local(num_cpus=num_cpus, num_gpus=num_gpus, logging_level=logging.WARNING,
                   log_to_driver=True)
    trimmer = HeapTrimmer()
    try:
        yield
    finally:
        trimmer.stop()
        ray.shutdown()


def init_local(**init_kwargs: Any) -> None:
    """``ray.init`` of a local instance whose every process listens on 127.0.0.1.

    The switch is needed only while Ray starts: its processes read it then, and
    once this process is a node its address is the node's, not guessed again.
    """
    with _local_only():
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                 **init_kwargs)


@contextlib.contextmanager
def _local_only() -> Iterator[None]:
    """Ray as a local-only instance while inside; as it was afterwards (a later
    ``ray.init(address=...)`` in the same process joins clusters as usual)."""
    before_env = os.environ.get(_LOCAL_ONLY_VAR)
    before_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_LOCAL_ONLY_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_flag
        if before_env is None:
            os.environ.pop(_LOCAL_ONLY_VAR, None)
        else:
            os.environ[_LOCAL_ONLY_VAR] = before_env
