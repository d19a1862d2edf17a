"""Metric promises: DAVIS J&F scored exactly as the official benchmark scores
it, and identity metrics (IDF1, ID switches) that see a broken stitch.

Every expected number is computed by hand in the comment above its assertion.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam_batch.dataset.rle import encode
from sam_batch.evaluation.metrics import (
    boundary_id_metrics,
    db_eval_boundary,
    db_eval_iou,
    db_statistics,
    disk,
    evaluate_video,
    identity_metrics,
    seg2bmap,
    summarize,
)


def square(size: int, y0: int, x0: int, side: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return m


# ---------------------------------------------------------------- DAVIS J&F


def test_seg2bmap_is_a_ring_half_a_pixel_towards_the_origin_and_ignores_the_frame_edge():
    # A 3x3 square at rows/cols 2..4: pixels differing from their right, lower or
    # lower-right neighbour form the 4x4 ring from (1, 1) to (4, 4).
    ring = np.zeros((7, 7), bool)
    ring[1:5, 1:5] = True
    ring[2:4, 2:4] = False
    assert (seg2bmap(square(7, 2, 2, 3)) == ring).all()
    # A mask filling the frame has no boundary at all; one touching the right
    # and bottom edges only has its top side (1, 1..4) and left side (2..4, 1).
    assert not seg2bmap(np.ones((5, 5), bool)).any()
    corner = seg2bmap(square(5, 2, 2, 3))
    assert sorted(zip(*np.nonzero(corner), strict=True)) == [
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 4),
        (2, 1),
        (3, 1),
        (4, 1),
    ]


def test_disk_is_skimages_disk():
    assert disk(2).astype(int).tolist() == [
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 0, 0],
    ]


def test_j_is_iou_with_both_empty_scoring_one_and_void_pixels_ignored():
    gt = np.zeros((4, 4), bool)
    gt[0:2] = True  # rows 0-1: 8 px
    pred = np.zeros((4, 4), bool)
    pred[1:3] = True  # rows 1-2: 8 px
    # intersection row 1 = 4, union rows 0-2 = 12
    assert db_eval_iou(gt, pred) == pytest.approx(4 / 12)
    # void row 2: union shrinks to rows 0-1 = 8, intersection stays 4
    void = np.zeros((4, 4), bool)
    void[2] = True
    assert db_eval_iou(gt, pred, void) == pytest.approx(0.5)
    empty = np.zeros((4, 4), bool)
    assert db_eval_iou(empty, empty) == 1.0
    assert db_eval_iou(gt, empty) == 0.0
    # [T, H, W] gives one value per frame
    assert db_eval_iou(np.stack([gt, empty]), np.stack([pred, empty])).tolist() == pytest.approx(
        [1 / 3, 1.0]
    )


def test_f_counts_boundary_pixels_within_the_diagonal_tolerance():
    # 20x20 frame: bound_pix = ceil(0.008 * hypot(20, 20)) = ceil(0.226) = 1, a
    # plus-shaped disk. gt: 5x5 square at (5, 5) -> boundary ring (4..9, 4..9),
    # 20 px. pred: the same shifted 2 columns right -> ring (4..9, 6..11).
    # Pred ring pixels within 1 (4-neighbourhood) of the gt ring:
    #   top and bottom rows, cols 6..11: cols 6..9 on the ring, col 10 next to
    #   col 9, col 11 two away -> 5 + 5; left side col 6, rows 5..8: only rows 5
    #   and 8 touch gt rows 4 and 9 -> 2; right side col 11 -> 0.
    # precision = 12/20 = 0.6; recall is the mirror image = 0.6; F = 0.6.
    gt = square(20, 5, 5, 5)
    pred = square(20, 5, 7, 5)
    assert db_eval_boundary(gt, pred) == pytest.approx(0.6)
    # A 2-pixel radius reaches every pixel of the other ring: F = 1.
    assert db_eval_boundary(gt, pred, bound_th=2) == 1.0
    # In a 100x100 frame the diagonal gives ceil(0.008 * 141.4) = 2: same shift, F = 1.
    assert db_eval_boundary(square(100, 5, 5, 5), square(100, 5, 7, 5)) == 1.0


def test_f_of_empty_boundaries():
    empty = np.zeros((20, 20), bool)
    gt = square(20, 5, 5, 5)
    assert db_eval_boundary(empty, empty) == 1.0
    assert db_eval_boundary(gt, empty) == 0.0
    assert db_eval_boundary(empty, gt) == 0.0
    # As officially: a mask filling the frame has no boundary, so it scores as empty.
    assert db_eval_boundary(np.ones((20, 20), bool), empty) == 1.0
    with pytest.raises(ValueError, match="whole"):
        db_eval_boundary(gt, gt, bound_th=1.5)


def test_statistics_mean_recall_and_decay_over_four_overlapping_bins():
    # N = 10: edges round(linspace(1, 10, 5)) - 1 = [0, 2, 5, 7, 9]; bins
    # [0:3], [2:6], [5:8], [7:10]. Values 0.0..0.9: first bin mean 0.1, last 0.8.
    s = db_statistics(np.arange(10) / 10)
    assert s.mean == pytest.approx(0.45)
    assert s.recall == pytest.approx(0.4)  # 0.6, 0.7, 0.8, 0.9 (strictly above 0.5)
    assert s.decay == pytest.approx(0.1 - 0.8)
    # N = 5: edges [0, 1, 2, 3, 4]; bins [0:2] and [3:5] -> (1 + 0)/2 - (0 + 1)/2 = 0.
    assert db_statistics(np.array([1.0, 0, 0, 0, 1])).decay == 0.0
    assert db_statistics(np.array([1.0, 1, 0, 0, 0])).decay == 1.0
    assert db_statistics(np.array([0.5, 0.51])).recall == 0.5


def video() -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """5 frames of 12x12. Object 1 is predicted right on frames 1..3 only;
    object 2 (on frames 1 and 2) is not predicted at all."""
    sq = square(12, 3, 3, 5)
    gt1 = np.stack([sq] * 5)
    pred1 = gt1.copy()
    pred1[0] = pred1[4] = False
    gt2 = np.zeros((5, 12, 12), bool)
    gt2[1] = gt2[2] = square(12, 6, 6, 4)
    return {1: gt1, 2: gt2}, {1: pred1}


def test_video_drops_first_and_last_frames_and_scores_missing_objects_as_empty():
    gt, pred = video()
    s = evaluate_video(gt, pred)
    # Object 1 on frames 1..3: perfect. Frames 0 and 4 (wrong) are not scored.
    assert (s.objects[1].j.mean, s.objects[1].f.mean) == (1.0, 1.0)
    # Object 2 on frames 1..3: gt, gt, empty vs empty -> J and F = [0, 0, 1].
    # N = 3: edges round(linspace(1, 3, 5)) - 1 = [0, 1, 1, 2, 2]: decay = mean(0, 0) - 1.
    for scores in (s.objects[2].j, s.objects[2].f):
        assert scores.mean == pytest.approx(1 / 3)
        assert scores.recall == pytest.approx(1 / 3)
        assert scores.decay == pytest.approx(-1.0)
    # Means over objects: J = F = (1 + 1/3) / 2 = 2/3, J&F = 2/3.
    assert s.mean.j.mean == pytest.approx(2 / 3)
    assert s.mean.jf == pytest.approx(2 / 3)
    # All 5 frames: object 1 J = [0, 1, 1, 1, 0] -> 0.6.
    assert evaluate_video(gt, pred, skip_first_last=False).objects[1].j.mean == pytest.approx(0.6)


def test_a_predicted_object_the_ground_truth_lacks_is_an_error():
    gt, pred = video()
    with pytest.raises(ValueError, match=r"\[3\]"):
        evaluate_video(gt, {**pred, 3: pred[1]})


def test_dataset_scores_weigh_objects_not_videos():
    gt, pred = video()
    two_objects = evaluate_video(gt, pred)  # J means 1 and 1/3
    one_object = evaluate_video({1: gt[1]}, {1: gt[1]})  # J mean 1
    # (1 + 1/3 + 1) / 3 = 7/9, not ((2/3) + 1) / 2 = 5/6
    assert summarize([two_objects, one_object]).j.mean == pytest.approx(7 / 9)


# ---------------------------------------------------------------- identity

S = 32
P = encode(square(S, 2, 2, 10)).rle  # left object, 100 px
Q = encode(square(S, 2, 18, 10)).rle  # right object, far from P
P2 = encode(square(S, 2, 4, 10)).rle  # P two columns right: IoU 80/120 = 2/3
EMPTY = encode(np.zeros((S, S), bool)).rle


def ref_two_objects() -> dict[int, dict[int, str]]:
    return {f: {1: P, 2: Q} for f in range(10)}


def test_identical_tracks_under_other_numbers_score_perfectly():
    pred = {f: {10: P, 20: Q} for f in range(10)}
    m = identity_metrics(pred, ref_two_objects(), S, S)
    assert (m.idf1, m.idtp, m.idfp, m.idfn, m.id_switches) == (1.0, 20, 0, 0, 0)
    assert dict(m.matching) == {10: 1, 20: 2}


def test_an_id_swap_at_a_boundary():
    # pred 10 follows P on frames 0..2 and Q on 3..9; pred 20 the converse.
    pred = {f: ({10: P, 20: Q} if f < 3 else {10: Q, 20: P}) for f in range(10)}
    m = identity_metrics(pred, ref_two_objects(), S, S)
    # agreeing frames: (10, 1) = 3, (10, 2) = 7, (20, 1) = 7, (20, 2) = 3.
    # Best one-to-one: 10->2, 20->1, IDTP = 14; IDFP = IDFN = 20 - 14 = 6;
    # IDF1 = 28 / (28 + 6 + 6) = 0.7. Both references change id at frame 3: 2 switches.
    assert (m.idtp, m.idfp, m.idfn) == (14, 6, 6)
    assert m.idf1 == pytest.approx(0.7)
    assert m.id_switches == 2
    assert dict(m.matching) == {10: 2, 20: 1}

    r = boundary_id_metrics(pred, ref_two_objects(), S, S, boundaries=[3, 7], window=2)
    # Around 3 (frames 1..5): (10,1) = 2, (20,2) = 2, (10,2) = 3, (20,1) = 3 ->
    # IDTP 6 of 10 + 10 -> IDF1 = 12/20 = 0.6; the swap is inside: 2 switches.
    near3 = r.per_boundary[3]
    assert (near3.frames, near3.idtp, near3.id_switches) == (5, 6, 2)
    assert near3.idf1 == pytest.approx(0.6)
    # Around 7 (frames 5..9): after the swap, consistent.
    assert (r.per_boundary[7].idf1, r.per_boundary[7].id_switches) == (1.0, 0)
    # Overall, frames 1..9: (10,2) = 7 and (20,1) = 7 -> IDF1 = 28/36.
    assert r.overall.frames == 9
    assert r.overall.idf1 == pytest.approx(28 / 36)
    assert r.overall.id_switches == 2


def test_a_track_missing_half_its_frames():
    ref = {f: {1: P} for f in range(10)}
    # pred 10 is P on frames 0..4, then writes empty masks (area-0 rows): absent.
    pred = {f: {10: P if f < 5 else EMPTY} for f in range(10)}
    m = identity_metrics(pred, ref, S, S)
    # IDTP 5, IDFP 0, IDFN 5: IDF1 = 10 / 15.
    assert (m.idtp, m.idfp, m.idfn, m.id_switches) == (5, 0, 5, 0)
    assert m.idf1 == pytest.approx(2 / 3)
    # The missing half comes back as a new id 11: IDFP 5 too, IDF1 = 10 / 20, 1 switch.
    pred = {f: ({10: P} if f < 5 else {11: P}) for f in range(10)}
    m = identity_metrics(pred, ref, S, S)
    assert (m.idtp, m.idfp, m.idfn, m.id_switches) == (5, 5, 5, 1)
    assert m.idf1 == pytest.approx(0.5)


def test_agreement_needs_mask_iou_of_at_least_one_half():
    ref = {0: {1: P}}
    # P moved 6 columns: IoU 40/160 = 0.25 -> no agreement at all.
    far = encode(square(S, 2, 8, 10)).rle
    m = identity_metrics({0: {10: far}}, ref, S, S)
    assert (m.idtp, m.idf1) == (0, 0.0)
    # Bands of columns 0..5 and 2..7: IoU exactly 4/8 = 0.5, which counts.
    a, b = np.zeros((S, S), bool), np.zeros((S, S), bool)
    a[0:10, 0:6] = True
    b[0:10, 2:8] = True
    m = identity_metrics({0: {10: encode(b).rle}}, {0: {1: encode(a).rle}}, S, S)
    assert m.idtp == 1


def test_switches_keep_a_still_valid_match_and_count_after_a_gap():
    # Frame 0: pred 10 = P. Frame 1: pred 10 = P2 (IoU 2/3, still valid) while
    # pred 20 = P exactly (IoU 1): CLEAR-MOT keeps 10 (a plain per-frame
    # Hungarian would switch to 20, and back at frame 2). Frame 2: 10 = P.
    # Frames 3..4: P is gone. Frame 5: P is back, only pred 20 covers it: one
    # switch, counted across the gap.
    ref = {f: {1: P} for f in (0, 1, 2, 5)}
    pred = {0: {10: P}, 1: {10: P2, 20: P}, 2: {10: P}, 5: {20: P}}
    m = identity_metrics(pred, ref, S, S)
    assert m.id_switches == 1
    # agreeing frames: (10, 1) = 3 (frames 0..2), (20, 1) = 2 (frames 1, 5): IDTP 3;
    # detections: pred 5, ref 4 -> IDFP 2, IDFN 1, IDF1 = 6 / 9.
    assert (m.idtp, m.idfp, m.idfn) == (3, 2, 1)
    assert m.idf1 == pytest.approx(2 / 3)


def test_no_detections_on_either_side_is_perfect_and_no_boundaries_is_empty():
    assert identity_metrics({0: {1: EMPTY}}, {}, S, S).idf1 == 1.0
    r = boundary_id_metrics({}, {}, S, S, boundaries=[], window=3)
    assert (r.per_boundary, r.overall.frames) == ({}, 0)
