"""A video's segments as the stitcher sees them, and which frames each one writes.

Seeded segments of one video run at once on different actors; next segments
share frames (``stitch`` reads its evidence there). A ``Segment`` holds its
frames ``[start, end)`` and its local tracks (``LocalTrack``), each under its own
id. ``validated_segments`` holds the layout to its rules: indices ``0..n-1``,
each segment following the last, sharing frames or touching, and no frame in
three segments.

Ownership (``stitch`` rule 8). With ``start = segments[s+1].start`` and
``overlap = segments[s].end - start``, segment ``s`` owns the overlap frames
``frame < start + (overlap + 1) // 2`` (the middle one of an odd overlap too:
its memory is mature, while the seeded segment ``s+1`` is least settled just
after its start); ``s+1`` owns the rest.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

Key = tuple[int, int]  # (segment index, local id)


@dataclass(frozen=True)
class LocalTrack:
    """One object as one segment tracked it, under the segment's own id.

    ``masks``: ``{frame_idx: rle}`` on the frames shared with the neighbours
    (others are ignored; a missing frame is empty). ``first_frame``: first
    frame present in the segment, only to order new ids. ``pinned_id``: the
    user's obj_id when a prompt made this track.

    >>> LocalTrack(local_id=1, first_frame=40, masks={}, pinned_id=7).pinned_id
    7
    """

    local_id: int
    first_frame: int
    masks: Mapping[int, str] = field(default_factory=dict)
    pinned_id: int | None = None


@dataclass(frozen=True)
class Segment:
    """Frames ``[start, end)`` of one video tracked in one go, and its tracks.

    >>> Segment(index=0, start=0, end=100).tracks
    ()
    """

    index: int
    start: int
    end: int
    tracks: tuple[LocalTrack, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tracks", tuple(self.tracks))


def owned_ranges(segments: Sequence[Segment]) -> list[tuple[int, int]]:
    """The frames ``[lo, hi)`` each segment writes, in segment order (rule 8).

    The ranges tile ``[segments[0].start, segments[-1].end)`` without gaps.

    >>> owned_ranges([Segment(0, 0, 105), Segment(1, 100, 200)])  # overlap 5
    [(0, 103), (103, 200)]
    """
    segs = validated_segments(segments)
    cuts = [_split(a, b) for a, b in pairwise(segs)]
    lows = [segs[0].start, *cuts] if segs else []
    highs = [*cuts, segs[-1].end] if segs else []
    return list(zip(lows, highs, strict=True))


def frame_owner(segments: Sequence[Segment], frame: int) -> int:
    """The index of the segment whose masks the output takes on ``frame``.

    >>> segs = [Segment(0, 0, 108), Segment(1, 100, 200)]  # overlap 8
    >>> frame_owner(segs, 103), frame_owner(segs, 104)
    (0, 1)
    """
    ranges = owned_ranges(segments)
    if not ranges or not ranges[0][0] <= frame < ranges[-1][1]:
        raise ValueError(f"frame {frame} is outside the segments' frames {ranges}")
    return bisect.bisect_right([lo for lo, _ in ranges], frame) - 1


def _split(left: Segment, right: Segment) -> int:
    """First frame owned by ``right`` at the boundary between the two."""
    return right.start + (left.end - right.start + 1) // 2



def validated_segments(segments: Sequence[Segment]) -> list[Segment]:
    """The segments in index order, or a ValueError naming what does not fit."""
    segs = sorted(segments, key=lambda s: s.index)
    if [s.index for s in segs] != list(range(len(segs))):
        got = [s.index for s in segs]
        raise ValueError(f"segment indices must be 0..{len(segs) - 1}, got {got}")
    for s in segs:
        where = f"segment {s.index} [{s.start}, {s.end})"
        locals_ = [t.local_id for t in s.tracks]
        pins = [t.pinned_id for t in s.tracks if t.pinned_id is not None]
        outside = [(t.local_id, f) for t in s.tracks for f in t.masks if not s.start <= f < s.end]
        for bad, why in [
            (s.start >= s.end, "has no frames"),
            (len(set(locals_)) != len(locals_), f"repeats local ids: {sorted(locals_)}"),
            (len(set(pins)) != len(pins), f"repeats pinned ids: {sorted(pins)}"),
            (bool(outside), f"has masks outside its frames, (local id, frame): {outside[:5]}"),
        ]:
            if bad:
                raise ValueError(f"{where} {why}")
    for a, b in pairwise(segs):
        if not (a.start < b.start <= a.end < b.end):
            raise ValueError(
                f"segments {a.index} [{a.start}, {a.end}) and {b.index} [{b.start}, {b.end}) "
                "must follow each other, sharing frames or touching, without a gap"
            )
    for a, c in zip(segs, segs[2:], strict=False):
        if c.start < a.end:
            raise ValueError(
                f"segments {a.index} and {c.index} share frames: a frame may be in two "
                "segments at most; shorten the overlap"
            )
    return segs
