"""A fixed-size pool of tracker actors that replaces the ones that die."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import ray

from sam_batch.errors import SamBatchError
from sam_batch.model import ModelIdentity
from sam_batch.runtime.actor import actor_class

log = logging.getLogger("sam_batch")


@dataclass
class Slot:
    """One place in the pool; its actor changes when the old one dies."""

    index: int
    actor: ray.actor.ActorHandle
    busy: bool = False
    generation: int = 0
    info: dict = field(default_factory=dict)


class ActorPool:
    def __init__(self, size: int, num_gpus: float, num_cpus: float, worker_kwargs: dict):
        self._cls = actor_class(num_gpus, num_cpus)
        self._kwargs = worker_kwargs
        self.slots = [Slot(i, self._new()) for i in range(size)]

    def _new(self) -> ray.actor.ActorHandle:
        return self._cls.remote(**self._kwargs)

    def wait_ready(self, timeout_s: float) -> ModelIdentity:
        """Wait for the actors to load their models; all must be the same model.

        At least one actor must come up within ``timeout_s``: otherwise the
        cluster cannot place even one (not enough GPUs or CPUs) and waiting
        longer would hang the job.
        """
        refs = {s.actor.ready.remote(): s for s in self.slots}
        deadline = time.monotonic() + timeout_s
        identities = set()
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1,
                                timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                if not identities:
                    raise SamBatchError(
                        f"no worker could start within {timeout_s:.0f} s: the cluster has no room "
                        "for one (check --workers, --gpus-per-worker and the cluster's resources)"
                    )
                log.warning("%d worker(s) still waiting for resources; going on without them",
                            len(refs))
                break
            slot = refs.pop(ready[0])
            try:
                slot.info = ray.get(ready[0])
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", e)
                raise SamBatchError(f"a worker could not load the model: {cause}") from None
            identities.add(ModelIdentity.from_dict(slot.info["identity"]))
        if len(identities) > 1:
            raise SamBatchError(
                f"workers disagree about the model ({identities}); every worker must run the "
                "same sam2 build (hole filling needs the CUDA extension on all or none)"
            )
        return identities.pop()

    def idle(self) -> list[Slot]:
        return [s for s in self.slots if not s.busy]

    def replace(self, slot: Slot) -> None:
        """Swap a dead (or suspect) actor for a fresh one in the same slot."""
        with contextlib.suppress(Exception):  # already gone
            ray.kill(slot.actor, no_restart=True)
        slot.actor = self._new()
        slot.generation += 1
        slot.busy = False
        log.warning("worker %d replaced (generation %d)", slot.index, slot.generation)

    def shutdown(self) -> None:
        for s in self.slots:
            with contextlib.suppress(Exception):
                ray.kill(s.actor, no_restart=True)
