"""The GPU actor: a ``Worker`` behind Ray, fed object references.

References are passed inside lists so Ray does not resolve them before the
method runs: a chunk's actor can start encoding frames while the previous
chunk's state is still being computed elsewhere, and a video's large task (the
frame index of an hour-long video) is fetched once per actor, not per chunk. A
small task comes inside the list itself (``Calls.share``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable

import ray

from sam_batch.plan.chunks import ChunkSpec
from sam_batch.plan.tasks import ChunkResult, VideoTask

#: Videos whose task an actor keeps fetched.
TASK_CACHE = 64


class TrackerActor:
    def __init__(self, **worker_kwargs: object):
        # torch and sam2 load here, in the actor's process: the driver that imports
        # this module to declare the actor class never needs them.
        from sam_batch.track.model import quiet_sam2_progress
        from sam_batch.track.worker import Worker

        quiet_sam2_progress()
        self._tasks: OrderedDict[tuple[str, int], VideoTask] = OrderedDict()
        # A model that cannot load is reported by ready(), as one line the driver
        # shows: raising here would kill the actor and print Ray's traceback instead.
        self.load_error: str | None = None
        try:
            self.worker = Worker(**worker_kwargs)  # type: ignore[arg-type]
        except Exception as e:
            self.load_error = f"{type(e).__name__}: {e}"

    def ready(self) -> dict:
        """Model identity, process and node: the driver checks all actors agree."""
        if self.load_error is not None:
            return {"load_error": self.load_error}
        return {
            "identity": self.worker.identity().to_dict(),
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    def _task(self, key: tuple[str, int], task_box: list) -> VideoTask:
        """The task of one (video, segment): each segment has its own prompts."""
        task = self._tasks.get(key)
        if task is None:
            task = task_box[0]
            if isinstance(task, ray.ObjectRef):
                task = ray.get(task)
            self._tasks[key] = task
            while len(self._tasks) > TASK_CACHE:
                self._tasks.popitem(last=False)
        self._tasks.move_to_end(key)
        return task

    def run_chunks(self, specs: tuple[ChunkSpec, ...], task_box: list, state_box: list
                   ) -> tuple[list[ChunkResult], bytes]:
        """Consecutive chunks of one chain, each from the state the one before made: one
        call (one completion for the driver) per ``--chunks-per-call`` chunks. Each chunk
        commits its part and checkpoint as it goes, so a retry or a resume starts from
        the last chunk committed, not from the call's first. A chain's first call (its
        state None) encodes the prompts first: the state before its first chunk."""
        ref = state_box[0]
        if ref is None:
            ref = self.worker.start_video(self._task((specs[0].video_id, specs[0].segment),
                                                     task_box))

        def state_source(block: bool) -> bytes | None:
            if isinstance(ref, bytes):
                return ref
            if block or ray.wait([ref], timeout=0)[0]:
                return ray.get(ref)
            return None

        results = []
        source = state_source
        for spec in specs:
            task = self._task((spec.video_id, spec.segment), task_box)
            result, data = self.worker.run_chunk(spec, task, source,
                                                 keep=specs[0].chunk_idx - 1)
            results.append(result)
            source = _ready(data)
        return results, data


def _ready(data: bytes) -> Callable[[bool], bytes]:
    """A state source whose state is already at hand."""
    return lambda block: data


def actor_class(num_gpus: float, num_cpus: float) -> type:
    """The Ray actor class with this job's resources."""
    return ray.remote(num_gpus=num_gpus, num_cpus=num_cpus, max_restarts=0)(TrackerActor)
