"""Stitching: link the local tracks of parallel segments into global object ids.

Seeded segments of one video run at once on different actors and number their
objects from scratch: "object 3" of segment 1 means nothing to segment 2. Next
segments share frames, and on those both segmented the same pixels; that
agreement is the only evidence used. The stitcher takes masks (RLE strings as
read back from the Parquet parts), never a model. Its rules:

1. Evidence. The overlap of boundary ``(s, s+1)`` is the frames
   ``[segments[s+1].start, segments[s].end)``. Left track A and right track B
   agree by their volumetric IoU ``Σ|A∩B| / Σ|A∪B|`` over those frames (no
   mask on a frame = empty; 0 when both are always empty): ``evidence``.
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
   settled just after its start); ``s+1`` owns the rest
   (``segments.owned_ranges``).

The segments and their layout rules live in ``segments``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy.optimize import linear_sum_assignment

from sam_batch.dataset.schema import ORIGIN_DISCOVERED, ORIGIN_PROMPT
from sam_batch.finish.evidence import volumetric_iou
from sam_batch.finish.segments import Key, LocalTrack, Segment, validated_segments


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
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    segs = validated_segments(segments)
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
