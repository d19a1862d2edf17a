"""Connect to a Ray cluster, or start an embedded one that listens on loopback only."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import ray

log = logging.getLogger("sam_batch")


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None = None,
                num_gpus: int | None = None) -> Iterator[None]:
    """With an address (or ``RAY_ADDRESS``): that cluster. Without: a local Ray.

    The embedded Ray binds to 127.0.0.1: nothing outside this machine needs to
    reach it, and on hosts that block traffic to their own address it is the
    only address that works. A Ray already initialised by the caller is used
    as it is and left running.
    """
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    else:
        ray.init(
            address="local",
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            logging_level=logging.WARNING,
            log_to_driver=True,
        )
    try:
        yield
    finally:
        ray.shutdown()
