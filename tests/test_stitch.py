"""Stitching promises: global ids follow the masks on the overlap, pins are the
user's word, nothing is numbered by chance.

Every case draws its own masks (boxes and discs) and encodes them with
``sam_batch.dataset.rle.encode``, exactly what the stitcher reads back from Parquet.
Unless said otherwise: segment 0 is frames [0, 20), segment 1 is [12, 30), so
the overlap is the 8 frames 12..19.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from sam_batch.dataset.rle import encode
from sam_batch.finish.evidence import volumetric_iou
from sam_batch.finish.segments import LocalTrack, Segment, frame_owner, owned_ranges
from sam_batch.finish.stitch import stitch

H, W = 48, 64
OVERLAP = range(12, 20)


def box(y0: int, x0: int, h: int = 10, w: int = 10) -> str:
    m = np.zeros((H, W), bool)
    m[y0 : y0 + h, x0 : x0 + w] = True
    return encode(m).rle


def disc(cy: float, cx: float, r: float = 6) -> str:
    yy, xx = np.mgrid[:H, :W]
    return encode((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).rle


EMPTY = encode(np.zeros((H, W), bool)).rle
A, B, C = box(2, 2), box(2, 30), box(30, 2)  # three objects that never touch


def track(
    local_id: int, masks: dict[int, str], first: int | None = None, pin: int | None = None
) -> LocalTrack:
    first = min(masks) if first is None else first
    return LocalTrack(local_id=local_id, first_frame=first, masks=masks, pinned_id=pin)


def on(mask: str, frames: range | list[int]) -> dict[int, str]:
    return {f: mask for f in frames}


def two(left: list[LocalTrack], right: list[LocalTrack]) -> list[Segment]:
    return [Segment(0, 0, 20, left), Segment(1, 12, 30, right)]


def test_permuted_local_ids_are_matched_by_masks_not_by_numbers():
    segs = two(
        [track(1, on(A, OVERLAP), 0), track(2, on(B, OVERLAP), 0), track(3, on(C, OVERLAP), 0)],
        [track(1, on(C, OVERLAP)), track(2, on(A, OVERLAP)), track(3, on(B, OVERLAP))],
    )
    r = stitch(segs, H, W)
    assert r.id_map(0) == {1: 1, 2: 2, 3: 3}
    assert r.id_map(1) == {1: 3, 2: 1, 3: 2}
    assert [(t.obj_id, t.sources, t.origin) for t in r.tracks] == [
        (1, ("0:1", "1:2"), "discovered"),
        (2, ("0:2", "1:3"), "discovered"),
        (3, ("0:3", "1:1"), "discovered"),
    ]
    assert {(k.left_id, k.right_id, k.iou) for k in r.links} == {
        (1, 2, 1.0),
        (2, 3, 1.0),
        (3, 1, 1.0),
    }
    assert r.dropped == ()


def test_objects_appearing_and_disappearing_inside_the_overlap():
    # A leaves after frame 14; the right segment loses it one frame early (and
    # writes empty rows after): IoU = 2 frames / 3 frames = 2/3, still A.
    # D enters at frame 17 and both sides see it. E enters at 18, left misses it.
    left = [
        track(1, {**on(A, range(12, 15)), **on(EMPTY, range(15, 20))}, first=0),
        track(2, on(B, range(17, 20))),
    ]
    right = [
        track(1, {**on(A, [12, 13]), **on(EMPTY, range(14, 20))}),
        track(2, on(B, range(17, 20))),
        track(3, on(C, [18, 19])),
    ]
    r = stitch(two(left, right), H, W)
    assert r.id_map(0) == {1: 1, 2: 2}
    assert r.id_map(1) == {1: 1, 2: 2, 3: 3}
    assert {(k.left_id, k.right_id): k.iou for k in r.links} == pytest.approx(
        {(1, 1): 2 / 3, (2, 2): 1.0}
    )
    assert r.tracks[2].sources == ("1:3",)


def test_a_track_split_in_time_continues_with_the_piece_it_agrees_with_most():
    # Right side loses A at frame 18 and re-finds it as a new local track:
    # IoU(A, piece 1) = 6/8 matches; IoU(A, piece 2) = 2/8 is a new object.
    left = [track(1, on(A, OVERLAP), first=0)]
    right = [track(1, on(A, range(12, 18))), track(2, on(A, [18, 19]))]
    r = stitch(two(left, right), H, W)
    assert r.id_map(1) == {1: 1, 2: 2}
    assert r.dropped == ()


def test_a_track_split_on_the_left_links_to_the_later_piece():
    # Left side: A is local 1 until frame 14, local 2 from 15. Right: one track.
    # IoU(1, right) = 3/8, IoU(2, right) = 5/8: the right track continues local 2.
    left = [track(1, on(A, range(12, 15)), first=0), track(2, on(A, range(15, 20)))]
    right = [track(7, on(A, OVERLAP))]
    r = stitch(two(left, right), H, W)
    assert r.id_map(0) == {1: 1, 2: 2}
    assert r.id_map(1) == {7: 2}


def test_look_alike_objects_crossing_in_the_overlap_keep_their_own_ids():
    # Two equal discs on one row run towards each other and cross between
    # frames 15 and 16. The right segment numbers them the other way round.
    p = {f: disc(24, 12 + 5 * (f - 12)) for f in OVERLAP}  # left to right
    q = {f: disc(24, 47 - 5 * (f - 12)) for f in OVERLAP}  # right to left
    r = stitch(two([track(1, p, 0), track(2, q, 0)], [track(1, q), track(2, p)]), H, W)
    assert r.id_map(1) == {1: 2, 2: 1}
    iou = volumetric_iou([track(1, p)], [track(1, q)], OVERLAP, H, W)[0, 0]
    assert 0 < iou < 0.5  # they do overlap while crossing, just not enough


def test_assignment_maximises_total_iou_not_greedy_best_pair():
    # Column bands on rows 10..19. Best single pair is (L0, R0) = 0.625, but
    # taking it leaves (L1, R1) = 6/16 = 0.375 below threshold; the optimum is
    # (L0, R1) = 6/10 and (L1, R0) = 12/20, total 1.2.
    def band(x0: int, x1: int) -> dict[int, str]:
        return on(box(10, x0, 10, x1 - x0), OVERLAP)

    left = [track(0, band(10, 20), 0), track(1, band(0, 16), 0)]
    right = [track(0, band(4, 20)), track(1, band(10, 16))]
    r = stitch(two(left, right), H, W)
    assert {(k.left_id, k.right_id): k.iou for k in r.links} == pytest.approx(
        {(0, 1): 0.6, (1, 0): 0.6}
    )
    assert r.id_map(1) == {0: 2, 1: 1}


def test_two_different_pins_are_never_merged_even_with_identical_masks():
    r = stitch(two([track(1, on(A, OVERLAP), 0, pin=5)], [track(1, on(A, OVERLAP), pin=9)]), H, W)
    assert r.id_map(0) == {1: 5}
    assert r.id_map(1) == {1: 9}
    assert r.links == ()
    assert r.dropped == ()  # a pinned track is the user's object: never a duplicate


def test_a_pin_wins_over_the_unpinned_track_it_is_merged_with():
    left = [track(1, on(A, OVERLAP), 0), track(2, on(B, OVERLAP), 0)]
    right = [track(3, on(A, OVERLAP), pin=7)]
    r = stitch(two(left, right), H, W)
    assert r.id_map(0) == {1: 7, 2: 8}  # new ids start above the largest pin
    assert r.id_map(1) == {3: 7}
    assert [(t.obj_id, t.origin, t.sources) for t in r.tracks] == [
        (7, "prompt", ("0:1", "1:3")),
        (8, "discovered", ("0:2",)),
    ]


def test_a_pin_wins_over_a_better_matching_look_alike_which_is_dropped():
    # The right segment has A twice: discovered (IoU 1.0 with the left track)
    # and prompted as 7, drawn one pixel off (IoU 90/110). The pin takes the
    # left track; the discovered copy is a duplicate of 7.
    left = [track(1, on(A, OVERLAP), 0)]
    right = [track(1, on(A, OVERLAP)), track(2, on(box(2, 3), OVERLAP), pin=7)]
    r = stitch(two(left, right), H, W)
    assert r.id_map(0) == {1: 7}
    assert r.id_map(1) == {2: 7}
    assert [(d.segment, d.local_id, d.duplicate_of) for d in r.dropped] == [(1, 1, 7)]
    assert r.dropped[0].iou == pytest.approx(1.0)


def test_one_pin_in_several_segments_is_one_track_without_overlap_evidence():
    # Pin 4 in segment 0 (gone before the overlap) and again in segment 2.
    segs = [
        Segment(0, 0, 20, [track(1, {}, first=0, pin=4)]),
        Segment(1, 12, 40, []),
        Segment(2, 32, 60, [track(6, {}, first=50, pin=4)]),
    ]
    r = stitch(segs, H, W)
    assert [(t.obj_id, t.origin, t.sources) for t in r.tracks] == [(4, "prompt", ("0:1", "2:6"))]


def test_a_global_track_never_holds_two_local_tracks_of_one_segment():
    # Segment 0: pin 7 was prompted on an object that is gone by the overlap,
    # and a discovered track W covers A. Segment 1 continues W. Segment 2 has
    # pin 7 drawn on A. Linking it would put W and pin 7's own segment-0 track
    # under one id, i.e. two rows per frame in segment 0: refused.
    o1, o2 = range(12, 20), range(32, 40)
    segs = [
        Segment(0, 0, 20, [track(1, {}, first=0, pin=7), track(2, on(A, o1), first=5)]),
        Segment(1, 12, 40, [track(1, {**on(A, o1), **on(A, o2)})]),
        Segment(2, 32, 60, [track(3, on(A, o2), pin=7)]),
    ]
    r = stitch(segs, H, W)
    assert [(t.obj_id, t.sources) for t in r.tracks] == [(7, ("0:1", "2:3")), (8, ("0:2", "1:1"))]
    assert [(k.boundary, k.left_id, k.right_id) for k in r.links] == [(0, 2, 1)]


def test_a_duplicate_right_track_is_dropped_and_a_duplicate_left_track_is_kept():
    shifted = on(box(3, 2), OVERLAP)  # A one row lower: IoU 90/110
    r = stitch(
        two([track(1, on(A, OVERLAP), 0)], [track(1, on(A, OVERLAP)), track(2, shifted)]), H, W
    )
    assert r.id_map(1) == {1: 1}
    assert [(d.segment, d.local_id, d.duplicate_of) for d in r.dropped] == [(1, 2, 1)]
    assert r.dropped[0].iou == pytest.approx(90 / 110)
    assert r.global_id(1, 2) is None

    r = stitch(
        two([track(1, on(A, OVERLAP), 0), track(2, shifted, 0)], [track(1, on(A, OVERLAP))]), H, W
    )
    assert r.id_map(0) == {1: 1, 2: 2}  # left copy was written before the overlap: kept
    assert r.id_map(1) == {1: 1}
    assert r.dropped == ()


def test_three_segments_chain_into_one_track_each():
    # Segments [0, 20), [12, 40), [32, 60); overlaps 12..19 and 32..39.
    o1, o2 = range(12, 20), range(32, 40)
    a2 = box(3, 2)  # A one row lower: IoU 90/110 with A, a look-alike copy
    s0 = [track(1, on(A, o1), 0), track(2, on(B, o1), 0)]
    s1 = [
        track(3, {**on(A, o1), **on(A, o2)}),
        track(1, {**on(B, o1), **on(B, o2)}),
        track(8, {**on(a2, o1), **on(a2, o2)}),  # duplicate of A
        track(4, on(C, o2), first=25),  # appears inside segment 1
    ]
    s2 = [track(2, on(A, o2)), track(5, on(B, o2)), track(9, on(C, o2)), track(7, on(a2, o2))]
    segs = [Segment(0, 0, 20, s0), Segment(1, 12, 40, s1), Segment(2, 32, 60, s2)]
    r = stitch(segs, H, W)
    assert r.id_map(0) == {1: 1, 2: 2}
    assert r.id_map(1) == {1: 2, 3: 1, 4: 3}
    assert r.id_map(2) == {2: 1, 5: 2, 9: 3}
    assert [t.sources for t in r.tracks] == [
        ("0:1", "1:3", "2:2"),
        ("0:2", "1:1", "2:5"),
        ("1:4", "2:9"),
    ]
    # The duplicate is dropped in segment 1 and so is its continuation in segment 2.
    assert [(d.segment, d.local_id, d.duplicate_of) for d in r.dropped] == [(1, 8, 1), (2, 7, 1)]


def test_new_ids_are_numbered_by_segment_then_first_frame_then_local_id():
    def build(shuffle: random.Random | None) -> list[Segment]:
        s0 = [track(5, {}, 3), track(2, {}, 3), track(9, {}, 0), track(1, {}, 0, pin=10)]
        s1 = [track(1, {}, 25), track(4, {}, 15)]
        if shuffle:
            shuffle.shuffle(s0)
            shuffle.shuffle(s1)
            return [Segment(1, 12, 30, s1), Segment(0, 0, 20, s0)]
        return [Segment(0, 0, 20, s0), Segment(1, 12, 30, s1)]

    r = stitch(build(None), H, W)
    assert r.id_map(0) == {1: 10, 9: 11, 2: 12, 5: 13}
    assert r.id_map(1) == {4: 14, 1: 15}
    assert stitch(build(random.Random(0)), H, W) == r  # input order does not matter


def test_volumetric_iou_sums_over_the_frames_either_track_is_present():
    # Frame 12: A vs A (100 / 100). Frame 13: A vs nothing (0 / 100).
    # Frame 14: both empty rows (counts for nothing). Frame 40: outside the frames asked.
    a = track(1, {12: A, 13: A, 14: EMPTY, 40: A})
    b = track(1, {12: A, 14: EMPTY, 40: B})
    assert volumetric_iou([a], [b], range(12, 20), H, W)[0, 0] == pytest.approx(100 / 200)
    assert volumetric_iou([a], [b], range(14, 15), H, W)[0, 0] == 0.0


def test_overlap_frames_are_owned_half_by_each_side_with_the_middle_to_the_earlier():
    even = [Segment(0, 0, 20), Segment(1, 12, 30)]  # overlap 12..19
    assert owned_ranges(even) == [(0, 16), (16, 30)]
    assert [frame_owner(even, f) for f in (0, 15, 16, 29)] == [0, 0, 1, 1]
    odd = [
        Segment(0, 0, 17),
        Segment(1, 12, 30),
        Segment(2, 30, 40),
    ]  # overlap 12..16, then touching
    assert owned_ranges(odd) == [(0, 15), (15, 30), (30, 40)]
    with pytest.raises(ValueError, match="outside"):
        frame_owner(odd, 40)


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ([Segment(0, 0, 10), Segment(1, 12, 30)], "without a gap"),
        ([Segment(0, 0, 20), Segment(1, 5, 30), Segment(2, 15, 40)], "two segments at most"),
        ([Segment(0, 0, 20, [track(1, {}, 0, pin=3), track(2, {}, 0, pin=3)])], "pinned ids"),
        ([Segment(0, 0, 20, [track(1, {25: A})])], "outside its frames"),
        ([Segment(1, 0, 20)], "indices"),
    ],
)
def test_inconsistent_segments_are_refused_with_a_reason(segments, message):
    with pytest.raises(ValueError, match=message):
        stitch(segments, H, W)
