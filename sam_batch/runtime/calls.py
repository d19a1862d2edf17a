"""How the scheduler reaches the cluster: an actor call, waiting, the object store.

``Calls`` is the seam between the scheduler's decisions and Ray: a job uses
``RayCalls``; the scheduler's tests use an in-process fake that completes calls
the way a cluster would, so lookahead, retry, replacement and resume are tested
in milliseconds.
"""

from __future__ import annotations

import pickle
from typing import Any, Protocol

import ray

from sam_batch.plan.chunks import ChunkSpec
from sam_batch.runtime.pool import Slot


class Calls(Protocol):
    """What the scheduler asks of the cluster: an actor's call, waiting on its
    answers, and the object store."""

    def run_chunks(self, slot: Slot, specs: tuple[ChunkSpec, ...], task_ref: Any, state: Any
                   ) -> tuple[Any, Any]:
        """Consecutive chunks of one chain in one call: (their results, the last state);
        ``state`` None: the chain's start, its prompts encoded first."""
    def wait(self, refs: list, timeout: float) -> list:
        """The refs that are ready: at least one, unless ``timeout`` passes first."""
    def get(self, ref: Any) -> Any: ...
    def put(self, value: Any) -> Any: ...
    def share(self, task: Any) -> Any:
        """A chain's task as its calls carry it: the task itself, or a reference."""
    def actor_died(self, error: BaseException) -> bool: ...
    def state_lost(self, error: BaseException) -> bool: ...


#: A chain's task up to this size (pickled) travels inside each of its calls; a larger
#: one (a long video's frame index, a seed state) goes to the object store once.
INLINE_TASK_BYTES = 16 * 1024


class RayCalls:
    """``Calls`` on Ray: actor methods, ``ray.wait``, the object store."""

    def run_chunks(self, slot: Slot, specs: tuple[ChunkSpec, ...], task_ref: Any, state: Any
                   ) -> tuple[ray.ObjectRef, ray.ObjectRef]:
        return slot.actor.run_chunks.options(num_returns=2).remote(specs, [task_ref], [state])

    def wait(self, refs: list, timeout: float) -> list:
        # Wake on the first completion (an idle actor gets work at once), then take
        # whatever else is already done; waiting for all would idle actors for ``timeout``.
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        return ready

    def get(self, ref: ray.ObjectRef) -> Any:
        return ray.get(ref)

    def put(self, value: Any) -> ray.ObjectRef:
        return ray.put(value)

    def share(self, task: Any) -> Any:
        """A small task goes inside each call: a ``ray.put`` and the borrowing of its
        reference by every actor that reads it cost the driver's core worker more
        than copying a few KB into the calls."""
        try:
            small = len(pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)) <= INLINE_TASK_BYTES
        except Exception:  # what pickle cannot take, Ray's cloudpickle may
            small = False
        return task if small else ray.put(task)

    def actor_died(self, error: BaseException) -> bool:
        # A RayTaskError is the method's own failure (also one that only re-raises the
        # death of the actor that was to make its input): its actor is alive.
        return (isinstance(error, ray.exceptions.RayActorError)
                and not isinstance(error, ray.exceptions.RayTaskError))

    def state_lost(self, error: BaseException) -> bool:
        """Whether an object a call needed is gone (its node died, or its owner)."""
        lost = (ray.exceptions.ObjectLostError, ray.exceptions.OwnerDiedError)
        return isinstance(error, lost) or isinstance(root_cause(error), lost)


def root_cause(error: BaseException) -> BaseException:
    """The user-level exception inside Ray's wrappers (whose text holds a traceback)."""
    while isinstance(getattr(error, "cause", None), BaseException):
        error = error.cause  # type: ignore[attr-defined]
    return error
