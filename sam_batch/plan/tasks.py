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

#: Seed masks a sparse pass hands to segment starts: ``{frame: ((obj_id, rle), ...)}``.
Seeds = dict[int, tuple[tuple[int, str], ...]]

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
    #: A sparse pass: track only these frames, return masks on ``seed_frames``.
    frame_indices: tuple[int, ...] | None = None
    seed_frames: tuple[int, ...] = ()
    #: An object group (``plan.object_groups``): track from this frame, the video's first
    #: prompted frame, though the group's own prompts may all come later.
    track_from: int | None = None

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
    seeds: Seeds | None = None  # a sparse pass's masks at segment starts
