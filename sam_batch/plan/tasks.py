"""What travels between the job's driver and its workers: plain values, no torch.

A ``VideoTask`` says which video a worker tracks and with which prompts; a
``ChunkResult`` is what the driver learns of a finished chunk (its masks stay in
the committed part). Both are small frozen dataclasses Ray pickles; the driver
imports them without the model code of ``sam_batch.track.worker``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sam_batch.dataset.writer import ObjectStats
from sam_batch.media.video import VideoInfo
from sam_batch.plan.chunks import ChunkSpec
from sam_batch.plan.prompts import Prompt

#: What a sparse pass hands to the segments it seeds: ``{segment start frame: state}``, the
#: memory state (``MemoryState`` bytes, global frame indices) to go on from at that frame.
Seeds = dict[int, bytes]

#: Returns the incoming state's bytes; with ``block=False`` None while not ready.
StateSource = Callable[[bool], "bytes | None"]


@dataclass(frozen=True)
class VideoTask:
    """One video as the workers need it: where, what it is, and its prompts."""

    video_id: str
    url: str
    info: VideoInfo
    prompts: tuple[Prompt, ...]
    #: Decides whether a checkpoint found on resume belongs to this same work.
    fingerprint: str = ""
    #: The segment this task runs and its first frame (a seeded segment starts there).
    segment: int = 0
    start_frame: int = 0
    #: Parts go to ``_staging/`` until the video is stitched (segments, discovery).
    staged: bool = False
    #: Discovered objects get ids from here (above every user id of the video).
    first_free_id: int = 1
    #: A sparse pass: track only these frames, return the memory at each of ``seed_frames``.
    frame_indices: tuple[int, ...] | None = None
    seed_frames: tuple[int, ...] = ()
    #: A seeded segment: the sparse pass's memory state at ``start_frame`` (bytes), which
    #: already holds every prompt of the video; ``prompts`` are then not encoded again.
    seed_state: bytes | None = None
    #: An object group (``plan.object_groups``): track from this frame, the video's first
    #: prompted frame, though the group's own prompts may all come later.
    track_from: int | None = None
    #: This segment's chunks (by index) whose states are not kept (``--keep-states``): the
    #: worker that commits a chunk's part deletes the state two chunks back if it is one
    #: of them (``track.worker``), so retention costs the driver nothing.
    drop_states: frozenset[int] = frozenset()

    @property
    def first_tracked_frame(self) -> int | None:
        if self.frame_indices is not None:
            return 0
        if self.track_from is not None:
            return self.track_from
        return min((p.frame for p in self.prompts), default=None)

    @property
    def is_sparse(self) -> bool:
        return self.frame_indices is not None


@dataclass(frozen=True)
class ChunkResult:
    """What the driver learns from a finished chunk (the masks stay in the part)."""

    spec: ChunkSpec
    part: str
    rows: int
    frames_tracked: int
    stats: dict[int, ObjectStats]
    encoded_ahead: int
    seconds: float
    seeds: Seeds | None = None  # a sparse pass's memory at the segment starts it reached
