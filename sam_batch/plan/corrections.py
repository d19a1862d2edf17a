"""What ``sam-batch correct`` asks a worker to do for one video (plain values).

A correction is prompts on one frame ``t`` of a finished video. The worker starts
from the kept state ``start_state`` (it continues at ``start_frame <= t``), replays
to ``t`` without writing, adds the prompts there and re-tracks ``chunks`` (the
video's chunks from the one holding ``t``), from ``t`` on.
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

    @property
    def retracked(self) -> int:
        return self.info.num_frames - self.frame

    @property
    def replayed(self) -> int:
        return self.frame - self.start_frame

    def to_record(self) -> dict:
        """The ``_job.json`` history entry (and the pending marker's)."""
        return {"video_id": self.video_id, "frame": self.frame,
                "prompts": [p.to_dict() for p in self.prompts]}
