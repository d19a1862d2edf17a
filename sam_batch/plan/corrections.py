"""What ``sam-batch correct`` asks a worker to do for one video (plain values).

A correction is prompts on one frame ``t`` of a finished video. The worker starts
from the kept state ``start_state`` of ``segment`` (it continues at
``start_frame <= t``), replays to ``t`` without writing, adds the prompts there
and re-tracks ``chunks`` (the segment's chunks from the one holding ``t``), from
``t`` on. Objects new to the video (``tail_ids``) are then tracked on alone over
``tail`` (the frames after the segment, in chunk-sized steps) so that they have a
row on every frame from ``t`` to the video's end.
"""

from __future__ import annotations

from dataclasses import dataclass

from sam_batch.media.video import VideoInfo
from sam_batch.plan.chunks import ChunkSpec
from sam_batch.plan.prompts import Prompt


@dataclass(frozen=True)
class CorrectionRequest:
    video_id: str
    info: VideoInfo
    frame: int
    prompts: tuple[Prompt, ...]
    start_state: str
    start_frame: int
    chunks: tuple[ChunkSpec, ...]
    segment: int = 0
    #: The first frame after ``t`` the segment does not own (stitching's ownership rule).
    owned_end: int = 0
    #: ``(start, end, segment, chunk_idx)``: which chunk's file holds frames from ``t`` on.
    owners: tuple[tuple[int, int, int, int], ...] = ()
    tail: tuple[tuple[int, int], ...] = ()
    tail_ids: tuple[int, ...] = ()

    @property
    def retracked(self) -> int:
        return (self.chunks[-1].end if self.chunks else self.frame) - self.frame

    @property
    def replayed(self) -> int:
        return self.frame - self.start_frame

    def to_record(self) -> dict:
        """The ``_job.json`` history entry (and the pending marker's)."""
        record = {"video_id": self.video_id, "frame": self.frame,
                  "prompts": [p.to_dict() for p in self.prompts]}
        return {**record, "segment": self.segment} if self.segment else record
