"""Feed the actor pool: many videos in flight, each video's chunks in order.

Per video: probe, plan, then each segment's chunks as a chain, the first call
encoding the prompts (START) before its chunks: chunk ``k+1`` becomes ready when
chunk ``k``'s state exists. An idle actor
takes ready work of any video first; failing that it takes the next chunk of a
chain whose current chunk is running (lookahead) and encodes its frames while
the state is computed. A state goes from the actor that made it to the next
chunk's actor as a reference (its bytes never pass through the driver); a chunk
whose actor or node dies, or whose input state was lost with its node, is retried
on a fresh actor from its input state, read back from its checkpoint in storage
(``Job.reload``). Bad input fails one video, never the job.

The scheduler owns its chains. What is decided per video (what to run, where to
resume, how to finish) it asks the ``Job``, whose answers are plain values; it
reaches the actors and the object store through ``Calls`` (``RayCalls`` in a
job), so its decisions are tested in-process against a fake pool and fake calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from sam_batch.errors import SamBatchError
from sam_batch.plan.tasks import ChunkResult
from sam_batch.runtime.calls import Calls, RayCalls, root_cause
from sam_batch.runtime.chains import START, Chain, ChainStart, Flight, Tally, VideoRun
from sam_batch.runtime.health import ClusterWatch
from sam_batch.runtime.pool import ActorPool, Slot

log = logging.getLogger("sam_batch")


class Job(Protocol):
    """The per-video decisions the scheduler asks for. A ``SamBatchError`` raised by
    ``prepare`` or ``prepared`` fails that video with its message."""

    def prepare(self, video: VideoRun) -> Any:
        """The call (an object reference) whose result ``prepared`` plans from: a probe."""

    def prepared(self, video: VideoRun, result: Any) -> list[ChainStart]:
        """The video's chains, resumed where storage says they stand."""

    def chunk_done(self, video: VideoRun, segment_index: int, result: ChunkResult
                   ) -> dict[int, Any]:
        """Sees every finished chunk; returns the tasks of chains that were waiting for
        what it made (seeds), by segment index."""

    def reload(self, video: VideoRun, segment_index: int, pos: int) -> bytes | None:
        """The input state of a chain's chunk ``pos``, read back from its checkpoint
        (the reference to it may be lost with its node); None: run the chain again
        from its start."""

    def finish(self, video: VideoRun) -> Any:
        """The call (an object reference) that finalises a video whose chunks are done."""

    def finished(self, video: VideoRun, result: Any) -> None: ...

    def failed(self, video: VideoRun) -> None: ...


class Scheduler:
    """Runs videos to completion on a pool, asking ``job`` what to run."""

    def __init__(
        self,
        pool: ActorPool,
        max_active: int,
        max_retries: int,
        scrub: Callable[[str], str],
        progress: Callable[[Scheduler], None] | None = None,
        calls: Calls | None = None,
        chunks_per_call: int = 1,
    ):
        self.pool = pool
        self.chunks_per_call = chunks_per_call
        self.calls: Calls = calls or RayCalls()
        self.max_active = max_active
        self.max_retries = max_retries
        self.scrub = scrub
        self.progress = progress
        self.flights: dict[Any, Flight] = {}
        self.active: list[VideoRun] = []
        self.tally = Tally()

    # -- the loop ---------------------------------------------------------------------

    def run(self, videos: list[VideoRun], job: Job) -> None:
        self.job = job
        self.tally = Tally(videos=len(videos))
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
        try:
            ref = self.job.prepare(video)
        except SamBatchError as e:
            self._fail(video, str(e))
            self._retire(video)
            return
        self._call(video, ref, "prepare")

    def _after_prepare(self, video: VideoRun, result: Any) -> None:
        try:
            starts = self.job.prepared(video, result)
        except SamBatchError as e:
            self._fail(video, str(e))
        else:
            video.chains = [self._chain(video, s) for s in starts]
            video.num_chunks = sum(len(c.chunks) for c in video.chains)
            video.status = "running"
            self.tally.planned += 1
            self.tally.chunks += video.num_chunks
            if all(c.done for c in video.chains):
                self._start_finish(video)  # resumed with every chunk already committed
        if video.status not in ("running", "finishing"):
            self._retire(video)

    def _chain(self, video: VideoRun, start: ChainStart) -> Chain:
        chain = Chain(start.segment, next=start.resume_at, counts_frames=start.counts_frames)
        if start.task is not None:
            chain.task_ref = self.calls.share(start.task)
        resumed = max(start.resume_at, 0)
        video.chunks_done += resumed
        self.tally.chunks_done += resumed
        if resumed == len(chain.chunks):
            chain.done = True
        elif start.state is not None:
            chain.states[start.resume_at] = self.calls.put(start.state)
        return chain

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
                prev = next((f for f in chain.running.values() if f.end == pos), None)
                if (pos < len(chain.chunks) and pos not in chain.running and prev is not None
                        and not prev.lookahead and prev.state_ref is not None):
                    return video, chain, pos, prev.state_ref, True
        return None

    def _submit(self, slot: Slot, video: VideoRun, chain: Chain, pos: int, state: Any,
                lookahead: bool) -> None:
        # A chain's start runs in the call of its first chunks (``state`` None): one call
        # fewer a chain, and the prompts' state goes on inside the actor, not via the driver.
        first = max(pos, 0)
        specs = chain.chunks[first:first + self.chunks_per_call]
        ref, state_ref = self.calls.run_chunks(slot, specs, chain.task_ref, state)
        flight = Flight("chunk", video, chain, pos, slot, slot.generation, lookahead,
                        state_ref, count=first - pos + len(specs))
        slot.busy = True
        chain.running[pos] = flight
        chain.next = flight.end
        video.inflight += 1
        self.flights[ref] = flight

    def _call(self, video: VideoRun, ref: Any, what: str) -> None:
        """Track a plain remote call of a video: ``prepare`` or ``finish``."""
        video.inflight += 1
        self.flights[ref] = Flight("call", video, call=what)

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
                state = flight.state_ref
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
            if flight.call == "prepare":
                self._after_prepare(video, value)
            else:
                self._finish_done(video, value)
            return
        chain = flight.chain
        assert chain is not None
        chain.running.pop(flight.pos, None)
        chain.states.pop(flight.pos, None)
        for result in value:
            self._chunk_done(video, chain, result)
        nxt = flight.end
        if nxt < len(chain.chunks):
            chain.states[nxt] = state  # a reference; lost with its node: reload
        else:
            chain.done = True
            if all(c.done for c in video.chains):
                self._start_finish(video)

    def _chunk_done(self, video: VideoRun, chain: Chain, result: ChunkResult) -> None:
        if chain.counts_frames:
            video.frames_tracked += result.frames_tracked
            self.tally.frames += result.frames_tracked
        video.chunks_done += 1
        self.tally.chunks_done += 1
        for index, task in self.job.chunk_done(video, chain.segment.index, result).items():
            video.chain_of(index).task_ref = self.calls.share(task)

    def _start_finish(self, video: VideoRun) -> None:
        video.status = "finishing"
        try:
            ref = self.job.finish(video)
        except Exception as e:  # finalising could not start: the video fails, not the job
            self._fail(video, f"{type(e).__name__}: {e}")
            return
        self._call(video, ref, "finish")

    def _finish_done(self, video: VideoRun, result: Any) -> None:
        self.job.finished(video, result)
        video.status = "done"
        self.tally.done += 1

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
        cause = root_cause(error)
        if isinstance(cause, SamBatchError):
            self._fail(video, str(cause))
            return
        if chain is None:  # a plain call (probe, finalise): no input state to retry from
            self._fail(video, f"{type(cause).__name__}: {cause}")
            return
        # A start has no input state to lose: it runs again from the task.
        self._retry(video, chain, flight, cause, reload=flight.pos != START and (
            actor_died or self.calls.state_lost(error)))

    def _retry(self, video: VideoRun, chain: Chain, flight: Flight, cause: BaseException,
               reload: bool) -> None:
        """Run the call again from its input state, or fail the video once its retries
        are spent; ``reload``: the input state's one copy may have gone with its node,
        so it is read back from its checkpoint."""
        key = (chain.segment.index, flight.pos)
        video.attempts[key] += 1
        what = _what(chain, flight)
        if video.attempts[key] > self.max_retries:
            self._fail(video, f"{what} failed {video.attempts[key]} times; last error: "
                              f"{type(cause).__name__}: {cause}")
            return
        log.warning("%s %s failed (%s), retrying from its input state",
                    video.video_id, what, self.scrub(type(cause).__name__))
        if not reload:
            return
        try:
            data = self.job.reload(video, chain.segment.index, flight.pos)
        except Exception as e:  # the checkpoint cannot be read: the video fails
            self._fail(video, f"{what}: its input state could not be read back: "
                              f"{type(e).__name__}: {e}")
            return
        if data is None:  # no checkpoint to go on from: the chain runs again from its start
            chain.next, chain.states = START, {}
        else:
            chain.states[flight.pos] = self.calls.put(data)

    def _fail(self, video: VideoRun, message: str) -> None:
        video.status = "failed"
        video.error = self.scrub(message)
        for chain in video.chains:
            chain.states.clear()

    def _retire(self, video: VideoRun) -> None:
        """A video leaves the active set; it keeps its counters only, so the driver's
        memory does not grow with the videos done (its chains hold chunk plans, task
        and state references, which pin objects in Ray's store)."""
        if video not in self.active:
            return
        self.active.remove(video)
        video.finished = time.time()
        if video.status == "failed":
            self.tally.failed += 1
            if video.chains == []:
                self.tally.planned += 1  # failed before its chunks were known
            self.job.failed(video)
        video.chains = []


def _what(chain: Chain, flight: Flight) -> str:
    """A call's work, as a failure message names it."""
    first, last = chain.chunks[max(flight.pos, 0)], chain.chunks[flight.end - 1]
    what = (f"chunk {first.chunk_idx}" if first is last
            else f"chunks {first.chunk_idx}-{last.chunk_idx}")
    return f"start and {what}" if flight.pos == START else what
