"""The scheduler's own records: a video in flight, its chains, the calls running.

Only the scheduler writes these. The job plans a chain once, as a ``ChainStart``
of plain values (the segment, its task, where it resumes); from then on where a
chain stands (``next``, ``states``, ``running``) is the scheduler's alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sam_batch.plan.chunks import ChunkSpec, SegmentPlan
from sam_batch.runtime.pool import Slot

#: Position of a chain's start (prompt encoding) before its chunks 0..n-1.
START = -1


@dataclass(frozen=True)
class ChainStart:
    """One chain as the job plans it: plain values, no object references."""

    segment: SegmentPlan
    #: The chain's task (prompts or seeds); None while it waits for seeds that a
    #: finished chunk of another chain hands over (``Job.chunk_done``).
    task: Any = None
    #: First position to run: START encodes the prompts; a chunk position resumes
    #: there from ``state``; ``len(segment.chunks)``: every chunk is committed.
    resume_at: int = START
    #: The input state (bytes) of chunk ``resume_at``, read back from its checkpoint.
    state: bytes | None = None
    #: Whether its frames are frames of the output (not a sparse pass, nor a second
    #: object group over the same frames): what progress counts.
    counts_frames: bool = True


@dataclass(eq=False)
class Chain:
    """One segment's chunks and where they stand."""

    segment: SegmentPlan
    #: The task as calls carry it (``Calls.share``: itself, or a reference in the object
    #: store); None while the chain awaits its seeds.
    task_ref: Any = None
    states: dict[int, Any] = field(default_factory=dict)  # input state by position
    running: dict[int, Flight] = field(default_factory=dict)
    next: int = START  # first position not yet dispatched
    done: bool = False
    counts_frames: bool = True

    @property
    def chunks(self) -> tuple[ChunkSpec, ...]:
        return self.segment.chunks


@dataclass(eq=False)
class VideoRun:
    """The scheduler's view of one video; the job keeps its own record of it
    (hashable by identity, so the job can key its records by the run)."""

    video_id: str
    chains: list[Chain] = field(default_factory=list)
    status: str = "pending"  # pending, running, finishing, done, failed
    error: str | None = None
    attempts: Counter = field(default_factory=Counter)
    inflight: int = 0
    num_chunks: int = 0
    frames_tracked: int = 0
    chunks_done: int = 0
    started: float | None = None
    finished: float | None = None

    def chain_of(self, segment_index: int) -> Chain:
        return next(c for c in self.chains if c.segment.index == segment_index)


@dataclass(eq=False)
class Flight:
    """A call in flight: what it runs, on which actor, and what it answers to."""

    kind: str  # "chunk" (a chain's call, its start included) or "call"
    video: VideoRun
    chain: Chain | None = None
    pos: int = START
    slot: Slot | None = None
    generation: int = 0
    lookahead: bool = False
    state_ref: Any = None
    count: int = 1  # chunks in the call (``--chunks-per-call``)
    call: str = ""  # a "call": what it was ("prepare" or "finish")

    @property
    def end(self) -> int:
        """The chain's position after this call: the next call's input is its state."""
        return self.pos + self.count


@dataclass
class Tally:
    """Running counts of a job, kept as videos go: progress reads these in constant
    time however many videos the job holds."""

    videos: int = 0
    done: int = 0
    failed: int = 0
    planned: int = 0  # videos whose chunks are known (or that failed before)
    chunks: int = 0  # chunks of the planned videos
    chunks_done: int = 0
    frames: int = 0
