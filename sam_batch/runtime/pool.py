"""A fixed-size pool of tracker actors that replaces the ones that die."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import ray

from sam_batch.errors import SamBatchError
from sam_batch.plan.model_spec import ModelIdentity
from sam_batch.runtime.actor import actor_class

log = logging.getLogger("sam_batch")


@dataclass
class Slot:
    """One place in the pool; its actor changes when the old one dies."""

    index: int
    actor: ray.actor.ActorHandle
    busy: bool = False
    generation: int = 0
    ready: bool = False  # the actor has loaded its model; only then does it get work
    info: dict = field(default_factory=dict)


class ActorPool:
    """Actors start loading at once; each takes work from the moment it is ready.

    The driver does not wait for the pool before it starts probing and
    planning videos: that overlaps with model loading, the largest start-up
    cost of a short job. An actor that the cluster cannot place yet (an
    autoscaled GPU group scaling up from zero) never holds work, so the ready
    ones are never stalled behind it; it joins when it comes up.
    """

    def __init__(self, size: int, num_gpus: float, num_cpus: float, worker_kwargs: dict,
                 start_timeout_s: float = 600.0):
        self._cls = actor_class(num_gpus, num_cpus)
        self._kwargs = worker_kwargs
        self.identity: ModelIdentity | None = None
        #: ``ready()`` calls not answered yet, by reference: the scheduler waits on them too.
        self.starting: dict[ray.ObjectRef, Slot] = {}
        self.deadline = time.monotonic() + start_timeout_s
        self._timeout_s = start_timeout_s
        self.slots = [Slot(i, self._new()) for i in range(size)]
        for slot in self.slots:
            self._watch(slot)

    def _new(self) -> ray.actor.ActorHandle:
        return self._cls.remote(**self._kwargs)

    def _watch(self, slot: Slot) -> None:
        slot.ready = False
        self.starting[slot.actor.ready.remote()] = slot

    def on_ready(self, ref: ray.ObjectRef) -> None:
        """Take one answered ``ready()``: the slot joins the pool, or the job stops.

        A model that cannot load, or workers that load different models, stop the
        job: no video could succeed, or their masks would mix models. An actor that
        died while starting (its node went away) is simply started again.
        """
        slot = self.starting.pop(ref, None)
        if slot is None:  # the slot's actor was replaced meanwhile
            return
        try:
            info = ray.get(ref)
        except ray.exceptions.RayActorError:
            log.warning("worker %d died while starting; starting another", slot.index)
            self.replace(slot)
            return
        if "load_error" in info:
            raise SamBatchError(f"a worker could not load the model: {info['load_error']}")
        identity = ModelIdentity.from_dict(info["identity"])
        if self.identity is not None and identity != self.identity:
            raise SamBatchError(
                f"workers disagree about the model ({self.identity} vs {identity}); every "
                "worker must run the same sam2 build (hole filling needs the CUDA extension "
                "on all or none)"
            )
        self.identity = identity
        slot.info, slot.ready = info, True

    def check_started(self) -> None:
        """Raise once ``start_timeout_s`` has passed without a single ready actor: the
        cluster has no room for one, and waiting longer would hang the job."""
        if self.identity is None and time.monotonic() > self.deadline:
            raise SamBatchError(
                f"no worker could start within {self._timeout_s:.0f} s: the cluster has no "
                "room for one (check --workers, --gpus-per-worker and the cluster's resources)"
            )

    def wait_ready(self) -> ModelIdentity:
        """Block until at least one actor is ready (for a job with nothing left to track,
        which still records the model it ran with)."""
        while self.identity is None:
            self.check_started()
            ready, _ = ray.wait(list(self.starting), num_returns=1,
                                timeout=max(0.0, min(1.0, self.deadline - time.monotonic())))
            for ref in ready:
                self.on_ready(ref)
        return self.identity

    def idle(self) -> list[Slot]:
        return [s for s in self.slots if s.ready and not s.busy]

    def replace(self, slot: Slot) -> None:
        """Swap a dead (or suspect) actor for a fresh one in the same slot."""
        with contextlib.suppress(Exception):  # already gone
            ray.kill(slot.actor, no_restart=True)
        for ref in [r for r, s in self.starting.items() if s is slot]:
            del self.starting[ref]
        slot.actor = self._new()
        slot.generation += 1
        slot.busy = False
        self._watch(slot)
        log.warning("worker %d replaced (generation %d)", slot.index, slot.generation)

    def shutdown(self) -> None:
        for s in self.slots:
            with contextlib.suppress(Exception):
                ray.kill(s.actor, no_restart=True)

