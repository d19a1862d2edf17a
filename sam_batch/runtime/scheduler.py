"""Feed the actor pool: many videos in flight, each video's chunks in order.

Per video: probe, plan, encode prompts (START), then each segment's chunks as a
chain: chunk ``k+1`` becomes ready when chunk ``k``'s state exists. An idle actor
takes ready work of any video first; failing that it takes the next chunk of a
chain whose current chunk is running (lookahead) and encodes its frames while
the state is computed. A state goes from the actor that made it to the next
chunk's actor as a reference (its bytes never pass through the driver); a chunk
whose actor or node dies, or whose input state was lost with its node, is retried
on a fresh actor from its input state, read back from its checkpoint in storage
(``reload``). Bad input fails one video, never the job.

The scheduler reaches the actors and the object store through ``Calls``
(``RayCalls`` in a job), so its decisions are tested in-process against a fake
pool and fake calls.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray

from sam_batch.errors import SamBatchError
from sam_batch.plan.chunks import ChunkSpec, SegmentPlan
from sam_batch.runtime.health import ClusterWatch
from sam_batch.runtime.pool import ActorPool, Slot

log = logging.getLogger("sam_batch")

#: Position of a chain's start (prompt encoding) before its chunks 0..n-1.
START = -1


class Calls(Protocol):
    """What the scheduler asks of the cluster: an actor's two calls, waiting on
    their answers, and the object store."""

    def start_video(self, slot: Slot, key: tuple[str, int], task_ref: Any) -> Any: ...
    def run_chunk(self, slot: Slot, spec: ChunkSpec, task_ref: Any, state: Any
                  ) -> tuple[Any, Any]: ...
    def wait(self, refs: list, timeout: float) -> list:
        """The refs that are ready: at least one, unless ``timeout`` passes first."""
    def get(self, ref: Any) -> Any: ...
    def put(self, value: Any) -> Any: ...
    def is_ref(self, value: Any) -> bool: ...
    def actor_died(self, error: BaseException) -> bool: ...


class RayCalls:
    """``Calls`` on Ray: actor methods, ``ray.wait``, the object store."""

    def start_video(self, slot: Slot, key: tuple[str, int], task_ref: Any) -> ray.ObjectRef:
        return slot.actor.start_video.remote(key, [task_ref])

    def run_chunk(self, slot: Slot, spec: ChunkSpec, task_ref: Any, state: Any
                  ) -> tuple[ray.ObjectRef, ray.ObjectRef]:
        return slot.actor.run_chunk.options(num_returns=2).remote(spec, [task_ref], [state])

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

    def is_ref(self, value: Any) -> bool:
        return isinstance(value, ray.ObjectRef)

    def actor_died(self, error: BaseException) -> bool:
        # A RayTaskError is the method's own failure (also one that only re-raises the
        # death of the actor that was to make its input): its actor is alive.
        return (isinstance(error, ray.exceptions.RayActorError)
                and not isinstance(error, ray.exceptions.RayTaskError))


@dataclass
class Chain:
    """One segment's chunks and where they stand."""

    segment: SegmentPlan
    #: The segment's task (prompts or seeds); None while a seeded segment awaits its seeds.
    task_ref: ray.ObjectRef | None = None
    states: dict[int, ray.ObjectRef] = field(default_factory=dict)  # input state by position
    running: dict[int, Flight] = field(default_factory=dict)
    next: int = START  # first position not yet dispatched
    done: bool = False

    @property
    def chunks(self) -> tuple[ChunkSpec, ...]:
        return self.segment.chunks


@dataclass
class VideoRun:
    """The driver's view of one video."""

    video_id: str
    payload: Any  # what the job needs back: entry, task, plan...
    chains: list[Chain] = field(default_factory=list)
    status: str = "pending"  # pending, running, finishing, done, failed
    error: str | None = None
    attempts: Counter = field(default_factory=Counter)
    inflight: int = 0
    frames_tracked: int = 0
    chunks_done: int = 0
    started: float | None = None
    finished: float | None = None

    released_chunks: int | None = None  # set once the video is retired (``release``)

    @property
    def num_chunks(self) -> int:
        if self.released_chunks is not None:
            return self.released_chunks
        return sum(len(c.chunks) for c in self.chains)

    def release(self) -> None:
        """Forget what only a running video needs: its chains (chunk plans, task and
        state references, which pin objects in Ray's store) and the job's payload
        (probe result, plan). A night's job keeps a retired video as a few counters,
        so the driver's memory does not grow with the videos done."""
        self.released_chunks = self.num_chunks
        self.chains = []
        self.payload = None


@dataclass
class Flight:
    kind: str  # "start", "chunk" or "call"
    video: VideoRun
    chain: Chain | None = None
    pos: int = START
    slot: Slot | None = None
    generation: int = 0
    lookahead: bool = False
    state_ref: ray.ObjectRef | None = None
    on_done: Callable[[Any], None] | None = None


class Scheduler:
    """Runs videos to completion on a pool; hooks let the job decide per video.

    ``on_start(video) -> bool`` prepares a video (probe, plan, resume): False if
    it failed or is already complete. ``on_finish(video)`` returns the remote
    call that finalises it (or, finalised at once, its result). ``on_failed(video)``
    records a failure.
    """

    def __init__(
        self,
        pool: ActorPool,
        max_active: int,
        max_retries: int,
        scrub: Callable[[str], str],
        progress: Callable[[Scheduler], None] | None = None,
        calls: Calls | None = None,
    ):
        self.pool = pool
        self.calls: Calls = calls or RayCalls()
        self.max_active = max_active
        self.max_retries = max_retries
        self.scrub = scrub
        self.progress = progress
        self.flights: dict[ray.ObjectRef, Flight] = {}
        self.videos: list[VideoRun] = []
        self.active: list[VideoRun] = []

    # -- the loop ---------------------------------------------------------------------

    def run(
        self,
        videos: list[VideoRun],
        prepare: Callable[[VideoRun], ray.ObjectRef | None],
        prepared: Callable[[VideoRun, Any], None],
        finish: Callable[[VideoRun], Any],
        finished: Callable[[VideoRun, Any], None],
        failed: Callable[[VideoRun], None],
        chunk_done: Callable[[VideoRun, Chain, Any], None] | None = None,
        reload: Callable[[VideoRun, Chain, int], Any] | None = None,
    ) -> None:
        """``chunk_done(video, chain, result)`` sees every finished chunk (seeds, stats).
        ``reload(video, chain, pos)`` puts the input state of the chain's chunk ``pos``
        back from its checkpoint (the reference to it may be lost with its node): it
        sets ``chain.states[pos]``, or moves the chain to where storage says it stands."""
        self.videos = videos
        self._chunk_done = chunk_done
        self._reload = reload
        self._prepare, self._prepared = prepare, prepared
        self._finish, self._finished, self._failed = finish, finished, failed
        pending = [v for v in videos if v.status == "pending"]
        cluster = ClusterWatch()  # the head gone: ClusterLostError, not a silent hang
        try:
            while pending or self.active or self.flights:
                while pending and len(self.active) < self.max_active:
                    self._admit(pending.pop(0))
                self.pool.check_started()
                self._dispatch()
                self._collect(timeout=1.0)
                cluster.check()
                if self.progress is not None:
                    self.progress(self)
        finally:
            cluster.stop()

    def _admit(self, video: VideoRun) -> None:
        video.started = time.time()
        self.active.append(video)
        ref = self._prepare(video)
        if ref is None:  # prepared synchronously (failed, or nothing to do)
            self._after_prepare(video, None)
            return
        self._call(video, ref, lambda result: self._after_prepare(video, result))

    def _after_prepare(self, video: VideoRun, result: Any) -> None:
        if video.status == "pending":
            self._prepared(video, result)
        if video.status == "running" and all(c.done for c in video.chains):
            self._start_finish(video)  # resumed with every chunk already committed
        if video.status in ("running", "finishing"):
            return
        self._retire(video)

    # -- dispatch ---------------------------------------------------------------------

    def _dispatch(self) -> None:
        for slot in self.pool.idle():
            work = self._ready_work() or self._lookahead_work()
            if work is None:
                return
            video, chain, pos, state, lookahead = work
            self._submit(slot, video, chain, pos, state, lookahead)

    def _ready_work(self) -> tuple | None:
        for video in self.active:
            if video.status != "running":
                continue
            for chain in video.chains:
                pos = chain.next
                if pos in chain.running or chain.done or pos >= len(chain.chunks):
                    continue
                if (pos == START and chain.task_ref is not None) or pos in chain.states:
                    return video, chain, pos, chain.states.get(pos), False
        return None

    def _lookahead_work(self) -> tuple | None:
        for video in self.active:
            if video.status != "running":
                continue
            for chain in video.chains:
                pos = chain.next
                prev = chain.running.get(pos - 1)
                if (pos < len(chain.chunks) and pos not in chain.running and prev is not None
                        and not prev.lookahead and prev.state_ref is not None):
                    return video, chain, pos, prev.state_ref, True
        return None

    def _submit(self, slot: Slot, video: VideoRun, chain: Chain, pos: int,
                state: ray.ObjectRef | None, lookahead: bool) -> None:
        if pos == START:
            key = (video.video_id, chain.segment.index)
            ref = self.calls.start_video(slot, key, chain.task_ref)
            flight = Flight("start", video, chain, pos, slot, slot.generation, state_ref=ref)
        else:
            spec = chain.chunks[pos]
            ref, state_ref = self.calls.run_chunk(slot, spec, chain.task_ref, state)
            flight = Flight("chunk", video, chain, pos, slot, slot.generation, lookahead,
                            state_ref)
        slot.busy = True
        chain.running[pos] = flight
        chain.next = pos + 1
        video.inflight += 1
        self.flights[ref] = flight

    def _call(self, video: VideoRun, ref: ray.ObjectRef, on_done: Callable[[Any], None]) -> None:
        """Track a plain remote call (probe, finalise) of a video."""
        video.inflight += 1
        self.flights[ref] = Flight("call", video, on_done=on_done)

    # -- completions ------------------------------------------------------------------

    def _collect(self, timeout: float) -> None:
        pending = [*self.pool.starting, *self.flights]
        if not pending:
            return
        ready = self.calls.wait(pending, timeout)
        for ref in [r for r in ready if r in self.pool.starting]:
            self.pool.on_ready(ref)  # an actor joins (or the model cannot load: job stops)
        for ref in ready:
            if ref not in self.flights:
                continue
            flight = self.flights.pop(ref)
            flight.video.inflight -= 1
            if flight.slot is not None and flight.slot.generation == flight.generation:
                flight.slot.busy = False
            try:
                # The chunk's result only: its state stays where the actor put it, and
                # goes on to the next chunk as a reference.
                value = self.calls.get(ref)
                state = flight.state_ref if flight.kind == "chunk" else ref
            except Exception as e:  # every failure is classified in _on_error
                self._on_error(flight, e)
            else:
                self._on_success(flight, value, state)
            if flight.video.status in ("failed", "done") and flight.video.inflight == 0:
                self._retire(flight.video)

    def _on_success(self, flight: Flight, value: Any, state: Any) -> None:
        video = flight.video
        if video.status == "failed":
            return
        if flight.kind == "call":
            assert flight.on_done is not None
            flight.on_done(value)
            return
        chain = flight.chain
        assert chain is not None
        chain.running.pop(flight.pos, None)
        chain.states.pop(flight.pos, None)
        if flight.kind == "chunk":
            if chain.segment.index >= 0:  # not a sparse pass: frames of the output
                video.frames_tracked += value.frames_tracked
            video.chunks_done += 1
            if self._chunk_done is not None:
                self._chunk_done(video, chain, value)
        nxt = flight.pos + 1
        if nxt < len(chain.chunks):
            chain.states[nxt] = state  # a reference; lost with its node: reload()
        else:
            chain.done = True
            if all(c.done for c in video.chains):
                self._start_finish(video)

    def _start_finish(self, video: VideoRun) -> None:
        """``finish`` returns the remote call that finalises the video, or its result
        when the job could finalise it at once."""
        video.status = "finishing"
        try:
            result = self._finish(video)
        except Exception as e:  # finalising here failed: the video fails, not the job
            self._fail(video, f"{type(e).__name__}: {e}")
            return
        if self.calls.is_ref(result):
            self._call(video, result, lambda r: self._finish_done(video, r))
        else:
            self._finish_done(video, result)

    def _finish_done(self, video: VideoRun, result: Any) -> None:
        self._finished(video, result)
        video.status = "done"

    def _on_error(self, flight: Flight, error: Exception) -> None:
        video, chain = flight.video, flight.chain
        actor_died = self.calls.actor_died(error)
        if actor_died and flight.slot is not None and flight.slot.generation == flight.generation:
            self.pool.replace(flight.slot)
        if video.status == "failed":
            return
        if chain is not None:
            chain.running.pop(flight.pos, None)
            chain.next = min(chain.next, flight.pos)
        if flight.lookahead and flight.pos not in chain.states:  # type: ignore[union-attr]
            return  # its state never came (the chunk before failed): it runs again later
        cause = _cause(error)
        if isinstance(cause, SamBatchError):
            self._fail(video, str(cause))
            return
        if flight.kind == "call":
            self._fail(video, f"{type(cause).__name__}: {cause}")
            return
        key = (chain.segment.index if chain else 0, flight.pos)
        video.attempts[key] += 1
        what = "start" if flight.pos == START else f"chunk {chain.chunks[flight.pos].chunk_idx}"
        if video.attempts[key] > self.max_retries:
            self._fail(video, f"{what} failed {video.attempts[key]} times; last error: "
                              f"{type(cause).__name__}: {cause}")
        else:
            log.warning("%s %s failed (%s), retrying from its input state",
                        video.video_id, what, self.scrub(type(cause).__name__))
            if flight.kind == "chunk" and self._reload is not None and (
                    actor_died or _state_lost(error)):
                # The input state's one copy may have gone with the node: its checkpoint.
                try:
                    self._reload(video, chain, flight.pos)
                except Exception as e:  # the checkpoint cannot be read: the video fails
                    self._fail(video, f"{what}: its input state could not be read back: "
                                      f"{type(e).__name__}: {e}")

    def _fail(self, video: VideoRun, message: str) -> None:
        video.status = "failed"
        video.error = self.scrub(message)
        for chain in video.chains:
            chain.states.clear()

    def _retire(self, video: VideoRun) -> None:
        if video in self.active:
            self.active.remove(video)
            video.finished = time.time()
            if video.status == "failed":
                self._failed(video)
            video.release()


def _state_lost(error: BaseException) -> bool:
    """Whether an object a call needed is gone (its node died, or its owner)."""
    lost = (ray.exceptions.ObjectLostError, ray.exceptions.OwnerDiedError)
    return isinstance(error, lost) or isinstance(_cause(error), lost)


def _cause(error: BaseException) -> BaseException:
    """The user-level exception inside Ray's wrappers (whose text holds a traceback)."""
    while isinstance(getattr(error, "cause", None), BaseException):
        error = error.cause  # type: ignore[attr-defined]
    return error
