"""The few Ray calls the job driver makes itself, so that only ``runtime/`` imports Ray.

The driver decides what runs off the driver process (a light task per video:
probe, finish) and which values go to the object store (chunk tasks, states);
this module is how.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray

#: A value or a result that lives in Ray's object store.
ObjectRef = ray.ObjectRef


def light_task(fn: Callable[..., Any]) -> Any:
    """``fn`` as a remote task that reserves no CPU: call it with ``.remote(...)``."""
    return ray.remote(num_cpus=0)(fn)


def put(value: Any) -> ObjectRef:
    """Place ``value`` in the object store once; every chunk that needs it reads the ref."""
    return ray.put(value)
