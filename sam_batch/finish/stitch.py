"""Stitching: link the local tracks of parallel segments into global object ids.

Seeded segments of one video run at once on different actors and number their
objects from scratch: "object 3" of segment 1 means nothing to segment 2. Next
segments share frames, and on those both segmented the same pixels; that
agreement is the only evidence used. The stitcher takes masks (RLE strings as
read back from the Parquet parts), never a model. Its rules:

1. Evidence. The overlap of boundary ``(s, s+1)`` is the frames
   ``[segments[s+1].start, segments[s].end)``. Left track A and right track B
   agree by their volumetric IoU ``Σ|A∩B| / Σ|A∪B|`` over those frames (no
   mask on a frame = empty; 0 when both are always empty).
2. Assignment. One-to-one per boundary by the Hungarian algorithm over the
   pairs with IoU >= ``iou_threshold``, maximising in this order: pairs that
   are one track already (same pin), pairs that continue a pinned group (a pin
   wins over a look-alike discovered track), the total IoU.
3. Chains. Union-find over all boundaries: a chain of matches is one track.
4. Pins. ``pinned_id`` is the user's obj_id of a prompted track. Tracks with
   one pin are one global track even without overlap evidence; a group's pin
   is its global id; two pins never meet in one group.
5. Exclusivity. A global track holds at most one local track per segment (the
   dataset promises one row per (frame, object)); pairs breaking it are
   forbidden.
6. Duplicates. An unmatched, unpinned right track with IoU >= threshold to a
   left track matched to another right track re-found a continuing object: it
   is dropped and reported. The symmetric left case is kept: that track was
   already written (maybe linked) before the overlap, and dropping it would
   delete history; its global track just ends.
7. New ids. Groups without a pin get ids from ``max(largest pin + 1, 1)`` up,
   in order of their earliest track by (segment, first frame, local id).
8. Ownership. With ``start = segments[s+1].start`` and ``overlap =
   segments[s].end - start``, segment ``s`` owns the overlap frames
   ``frame < start + (overlap + 1) // 2`` (the middle one of an odd overlap
   too: its memory is mature, while the seeded segment ``s+1`` is least
   settled just after its start); ``s+1`` owns the rest (:func:`owned_ranges`).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from sam_batch.dataset.rle import to_coco
from sam_batch.dataset.schema import ORIGIN_DISCOVERED, ORIGIN_PROMPT

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


@dataclass(frozen=True)
class GlobalTrack:
    """One global object; ``sources`` (``"<segment>:<local_id>"``) feed ``tracks/``.

    >>> GlobalTrack(obj_id=1, origin="discovered", sources=("0:3", "1:1")).sources[1]
    '1:1'
    """

    obj_id: int
    origin: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Link:
    """A pair kept at boundary ``(boundary, boundary + 1)``; ``by_pin``: kept as one pin.

    >>> Link(boundary=0, left_id=2, right_id=1, iou=0.9, by_pin=False).iou
    0.9
    """

    boundary: int
    left_id: int
    right_id: int
    iou: float
    by_pin: bool


@dataclass(frozen=True)
class DroppedTrack:
    """A right-side local track dropped as a duplicate of global ``duplicate_of``.

    >>> DroppedTrack(segment=1, local_id=4, duplicate_of=2, iou=0.8).duplicate_of
    2
    """

    segment: int
    local_id: int
    duplicate_of: int
    iou: float


@dataclass(frozen=True)
class StitchResult:
    """Global ids for local tracks, the global tracks, and what was dropped.

    >>> r = stitch([Segment(0, 0, 10, (LocalTrack(5, 0, pinned_id=3),))], 4, 4)
    >>> r.global_id(0, 5), r.id_map(0), r.tracks[0].origin
    (3, {5: 3}, 'prompt')
    """

    tracks: tuple[GlobalTrack, ...]
    dropped: tuple[DroppedTrack, ...]
    links: tuple[Link, ...]
    ids: Mapping[Key, int]

    def global_id(self, segment: int, local_id: int) -> int | None:
        """The global id of one local track; ``None`` if it was dropped."""
        return self.ids.get((segment, local_id))

    def id_map(self, segment: int) -> dict[int, int]:
        """``{local_id: global_id}`` of one segment: what its writer applies."""
        return {local: gid for (seg, local), gid in self.ids.items() if seg == segment}


def stitch(
    segments: Sequence[Segment], height: int, width: int, iou_threshold: float = 0.5
) -> StitchResult:
    """Link the segments' local tracks into global object ids (module rules 1-7).

    ``height`` and ``width`` are the frame size every RLE was encoded at.

    >>> import numpy as np
    >>> from sam_batch.dataset.rle import encode
    >>> m = np.zeros((8, 8), bool); m[2:6, 2:6] = True
    >>> rle = encode(m).rle
    >>> a = Segment(0, 0, 12, [LocalTrack(1, 0, {10: rle, 11: rle})])
    >>> b = Segment(1, 10, 20, [LocalTrack(4, 10, {10: rle, 11: rle})])
    >>> r = stitch([a, b], 8, 8)
    >>> r.global_id(0, 1), r.global_id(1, 4), r.tracks[0].sources
    (1, 1, ('0:1', '1:4'))
    """
    segs = _validated(segments, iou_threshold)
    tracks: dict[Key, LocalTrack] = {(s.index, t.local_id): t for s in segs for t in s.tracks}
    groups = _Groups({key: t.pinned_id for key, t in tracks.items()})
    first_with_pin: dict[int, Key] = {}
    for key, track in tracks.items():
        if track.pinned_id is not None:
            groups.union(first_with_pin.setdefault(track.pinned_id, key), key)

    links: list[Link] = []
    dropped: dict[Key, tuple[Key, float]] = {}  # dropped key -> (left key it duplicates, iou)
    for left_seg, right_seg in pairwise(segs):
        b = left_seg.index
        left = [t for t in left_seg.tracks if (b, t.local_id) not in dropped]
        right = list(right_seg.tracks)
        iou = volumetric_iou(left, right, range(right_seg.start, left_seg.end), height, width)
        weight, same = _weights(b, left, right, iou, groups, iou_threshold)
        matched: dict[int, int] = {}  # right index -> left index
        for i, j in zip(*linear_sum_assignment(weight, maximize=True), strict=True):
            if weight[i, j] > 0:
                matched[int(j)] = int(i)
                lt, rt = left[i], right[j]
                groups.union((b, lt.local_id), (b + 1, rt.local_id))
                links.append(Link(b, lt.local_id, rt.local_id, float(iou[i, j]), bool(same[i, j])))
        taken = set(matched.values())
        for j, rt in enumerate(right):
            if j in matched or rt.pinned_id is not None:
                continue
            twins = [i for i in taken if iou[i, j] >= iou_threshold]
            if twins:
                best = max(twins, key=lambda i: (iou[i, j], -i))
                dropped[(b + 1, rt.local_id)] = ((b, left[best].local_id), float(iou[best, j]))

    return _result(tracks, groups, links, dropped)


def volumetric_iou(
    left: Sequence[LocalTrack], right: Sequence[LocalTrack], frames: range, height: int, width: int
) -> np.ndarray:
    """``[len(left), len(right)]`` IoU of whole tracks over ``frames`` (rule 1).

    Intersections come from pycocotools' RLE IoU (``I = iou·(a+b)/(1+iou)``),
    one call per frame, without decoding a mask.

    >>> import numpy as np
    >>> from sam_batch.dataset.rle import encode
    >>> a = np.zeros((4, 4), bool); a[:, :2] = True
    >>> b = np.zeros((4, 4), bool); b[:, 1:3] = True
    >>> l = LocalTrack(1, 0, {0: encode(a).rle, 1: encode(a).rle})
    >>> r = LocalTrack(1, 0, {0: encode(b).rle})
    >>> volumetric_iou([l], [r], range(2), 4, 4)  # (4 + 0) / (12 + 8)
    array([[0.2]])
    """
    inter = np.zeros((len(left), len(right)))
    sum_left, sum_right = np.zeros(len(left)), np.zeros(len(right))
    for frame in frames:
        li, lr, la = _nonempty(left, frame, height, width)
        ri, rr, ra = _nonempty(right, frame, height, width)
        sum_left[li] += la
        sum_right[ri] += ra
        if lr and rr:
            iou = np.asarray(mask_utils.iou(lr, rr, [0] * len(rr)), float)
            both = np.rint(iou * (la[:, None] + ra[None, :]) / (1.0 + iou))
            inter[np.ix_(li, ri)] += both
    union = sum_left[:, None] + sum_right[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def owned_ranges(segments: Sequence[Segment]) -> list[tuple[int, int]]:
    """The frames ``[lo, hi)`` each segment writes, in segment order (rule 8).

    The ranges tile ``[segments[0].start, segments[-1].end)`` without gaps.

    >>> owned_ranges([Segment(0, 0, 105), Segment(1, 100, 200)])  # overlap 5
    [(0, 103), (103, 200)]
    """
    segs = _validated(segments, 0.5)
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


def _weights(
    b: int,
    left: list[LocalTrack],
    right: list[LocalTrack],
    iou: np.ndarray,
    groups: _Groups,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Assignment weights in three tiers (rule 2), and which pairs are one track.

    An assignment holds fewer than ``n`` pairs, so its IoUs sum below ``n`` and
    its pinned tier below ``n * n``: each tier outweighs all lower ones.
    """
    n = max(len(left), len(right)) + 1
    weight = np.zeros_like(iou)
    same = np.zeros(iou.shape, bool)
    for i, lt in enumerate(left):
        for j, rt in enumerate(right):
            lk, rk = (b, lt.local_id), (b + 1, rt.local_id)
            if groups.same(lk, rk):
                same[i, j] = True
                weight[i, j] = n * n + iou[i, j]
            elif iou[i, j] >= threshold and groups.compatible(lk, rk):
                pinned = groups.pin_of(lk) is not None or groups.pin_of(rk) is not None
                weight[i, j] = n * pinned + iou[i, j]
    return weight, same


def _split(left: Segment, right: Segment) -> int:
    """First frame owned by ``right`` at the boundary between the two."""
    return right.start + (left.end - right.start + 1) // 2


def _nonempty(
    tracks: Sequence[LocalTrack], frame: int, height: int, width: int
) -> tuple[list[int], list[dict], np.ndarray]:
    """Indices, RLE objects and areas of the tracks with a non-empty mask on ``frame``."""
    index, rles = [], []
    for i, track in enumerate(tracks):
        rle = track.masks.get(frame)
        if rle is not None:
            index.append(i)
            rles.append(to_coco(rle, height, width))
    areas = np.asarray(mask_utils.area(rles), float) if rles else np.zeros(0)
    keep = [k for k, area in enumerate(areas) if area > 0]
    return [index[k] for k in keep], [rles[k] for k in keep], areas[keep]


class _Groups:
    """Union-find over local tracks that refuses to join incompatible groups.

    Each root knows its group's pin and the segments it has a track in, so a
    join that would mix two pins or two tracks of one segment is seen before
    it happens (rules 4 and 5).
    """

    def __init__(self, pins: Mapping[Key, int | None]) -> None:
        self.parent: dict[Key, Key] = {key: key for key in pins}
        self.pin: dict[Key, int | None] = dict(pins)
        self.segments: dict[Key, set[int]] = {key: {key[0]} for key in pins}

    def find(self, key: Key) -> Key:
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def same(self, a: Key, b: Key) -> bool:
        return self.find(a) == self.find(b)

    def pin_of(self, key: Key) -> int | None:
        return self.pin[self.find(key)]

    def compatible(self, a: Key, b: Key) -> bool:
        ra, rb = self.find(a), self.find(b)
        pa, pb = self.pin[ra], self.pin[rb]
        if pa is not None and pb is not None and pa != pb:
            return False
        return not self.segments[ra] & self.segments[rb]

    def union(self, a: Key, b: Key) -> None:
        ra, rb = sorted((self.find(a), self.find(b)))
        if ra == rb:
            return
        self.parent[rb] = ra
        self.pin[ra] = self.pin[ra] if self.pin[ra] is not None else self.pin[rb]
        self.segments[ra] |= self.segments.pop(rb)


def _result(
    tracks: Mapping[Key, LocalTrack],
    groups: _Groups,
    links: list[Link],
    dropped: Mapping[Key, tuple[Key, float]],
) -> StitchResult:
    """Allocate global ids to the groups (rule 7) and assemble the result."""
    members: dict[Key, list[Key]] = {}
    for key in tracks:
        if key not in dropped:
            members.setdefault(groups.find(key), []).append(key)
    pins = [t.pinned_id for t in tracks.values() if t.pinned_id is not None]
    next_id = max(max(pins, default=0) + 1, 1)

    def earliest(root: Key) -> tuple[int, int, int]:
        return min((seg, tracks[seg, local].first_frame, local) for seg, local in members[root])

    gid: dict[Key, int] = {}
    for root in sorted(members, key=earliest):
        if groups.pin[root] is not None:
            gid[root] = groups.pin[root]
        else:
            gid[root], next_id = next_id, next_id + 1
    out = [
        GlobalTrack(
            gid[root],
            ORIGIN_PROMPT if groups.pin[root] is not None else ORIGIN_DISCOVERED,
            tuple(f"{seg}:{local}" for seg, local in sorted(keys)),
        )
        for root, keys in sorted(members.items(), key=lambda item: gid[item[0]])
    ]
    ids = {key: gid[root] for root, keys in members.items() for key in keys}
    drops = [DroppedTrack(*key, ids[twin], iou) for key, (twin, iou) in sorted(dropped.items())]
    return StitchResult(tuple(out), tuple(drops), tuple(links), dict(sorted(ids.items())))


def _validated(segments: Sequence[Segment], iou_threshold: float) -> list[Segment]:
    """The segments in index order, or a ValueError naming what does not fit."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
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
