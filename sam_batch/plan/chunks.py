"""Cut a video into segments and chunks: the work plan a job schedules.

Within a segment, chunks are continued: each starts from the previous chunk's
memory state, so the segment equals one uninterrupted pass. Segments after the
first are seeded and start ``overlap`` frames before the previous segment ends,
so the stitcher can match tracks over frames both have seen. Chunk indices are
numbered through the whole video so every part and row of a video has one.

>>> [(c.segment, c.start, c.end) for c in plan_video("v", 100, chunk_frames=30).chunks]
[(0, 0, 30), (0, 30, 60), (0, 60, 90), (0, 90, 100)]
>>> [(s.start, s.end) for s in plan_video("v", 100, 30, segments=2, overlap=8).segments]
[(0, 50), (42, 100)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sam_batch.errors import ConfigError


@dataclass(frozen=True)
class ChunkSpec:
    """Frames ``[start, end)`` of one video, the unit a worker runs."""

    video_id: str
    segment: int
    chunk_idx: int
    start: int
    end: int

    @property
    def num_frames(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SegmentPlan:
    index: int
    start: int
    end: int
    chunks: tuple[ChunkSpec, ...]

    @property
    def seeded(self) -> bool:
        return self.index > 0


@dataclass(frozen=True)
class VideoPlan:
    video_id: str
    num_frames: int
    segments: tuple[SegmentPlan, ...]

    @property
    def chunks(self) -> tuple[ChunkSpec, ...]:
        return tuple(c for s in self.segments for c in s.chunks)


def segment_ranges(num_frames: int, segments: int, overlap: int) -> list[tuple[int, int]]:
    """``segments`` near-equal spans; each after the first reaches ``overlap`` back."""
    if segments < 1:
        raise ConfigError(f"segments must be >= 1, got {segments}")
    bounds = [round(i * num_frames / segments) for i in range(segments + 1)]
    return [(max(0, bounds[i] - (overlap if i else 0)), bounds[i + 1]) for i in range(segments)]


def plan_video(
    video_id: str, num_frames: int, chunk_frames: int, segments: int = 1, overlap: int = 0
) -> VideoPlan:
    if num_frames < 1:
        raise ConfigError(f"video {video_id!r} has no frames to plan")
    # A segment shorter than its overlap would be all overlap: use fewer segments.
    segments = max(1, min(segments, num_frames // max(2 * overlap, 1)))
    chunk_idx = 0
    planned = []
    for index, (start, end) in enumerate(segment_ranges(num_frames, segments, overlap)):
        chunks = []
        for s in range(start, end, chunk_frames):
            chunks.append(ChunkSpec(video_id, index, chunk_idx, s, min(s + chunk_frames, end)))
            chunk_idx += 1
        planned.append(SegmentPlan(index, start, end, tuple(chunks)))
    return VideoPlan(video_id, num_frames, tuple(planned))


def auto_segments(num_frames: int, chunk_frames: int, workers: int, videos: int) -> int:
    """Segments per video so that the workers have work when videos are few.

    With at least as many videos as workers, every worker already has a video:
    one segment each, so every video is one exact pass. Otherwise spread the
    workers over the videos, never making a segment shorter than two chunks.
    """
    if videos >= workers:
        return 1
    per_video = math.ceil(workers / max(videos, 1))
    return max(1, min(per_video, num_frames // (2 * chunk_frames)))


#: Segment index of a video's sparse pass (it writes no masks, only seeds).
SPARSE = -1


def sparse_indices(num_frames: int, step: int, prompt_frames: list[int],
                   seed_frames: list[int]) -> list[int]:
    """Frames a sparse pass tracks: every ``step``-th from the first prompt, every
    prompted frame, and every segment start to seed, up to the last of those.

    >>> sparse_indices(100, 8, [3], [42, 71])
    [3, 11, 19, 27, 35, 42, 43, 51, 59, 67, 71]
    """
    first = min(prompt_frames, default=0)
    last = max([*seed_frames, *prompt_frames, first])
    sampled = set(range(first, min(last, num_frames - 1) + 1, max(step, 1)))
    return sorted(sampled | set(prompt_frames) | {f for f in seed_frames if f >= first})


def sparse_plan(video_id: str, num_frames: int, chunk_frames: int) -> SegmentPlan:
    """The sparse pass as a chain of chunks over its own ``num_frames`` samples."""
    chunks = tuple(ChunkSpec(video_id, SPARSE, i, s, min(s + chunk_frames, num_frames))
                   for i, s in enumerate(range(0, num_frames, chunk_frames)))
    return SegmentPlan(SPARSE, 0, num_frames, chunks)
