"""DAVIS 2017 semi-supervised J&F, by the rules of the official evaluation.

Scores are only comparable with published ones if every detail matches
``davisvideochallenge/davis2017-evaluation`` (``davis2017/metrics.py``,
``evaluation.py``, ``utils.py``), so this module follows it rule by rule:

- J (region similarity): IoU of the ground-truth and predicted masks; 1 when
  both are empty. Void pixels, if given, count for neither.
- F (boundary accuracy): each mask becomes a one-pixel boundary map
  (:func:`seg2bmap`), each map is dilated by a disk of radius ``bound_pix``
  (``bound_th`` pixels when ``bound_th >= 1``, else
  ``ceil(bound_th * hypot(H, W))``); precision is the share of predicted
  boundary pixels inside the dilated ground-truth boundary, recall the
  converse, F = 2PR / (P + R). Both boundaries empty: 1; one empty: 0.
- Per object, over the evaluated frames (:func:`db_statistics`): the mean, the
  recall (share of frames scoring > 0.5) and the decay (mean of the first of 4
  bins minus mean of the last; bin edges ``round(linspace(1, N, 5)) - 1``, each
  bin including its right edge, so neighbouring bins share a frame).
- Frames: the semi-supervised evaluation drops the first frame (it carries the
  given mask) and the last frame of every sequence.
- Objects: those of the ground truth. One missing from the prediction is empty
  on every frame (the official code pads with zeros); a predicted object the
  ground truth lacks is an error (the official code exits).
- Means over objects, not sequences: a video's (and a dataset's) J, F and their
  recall and decay are means over its objects, J&F = (J + F) / 2.

Two deliberate differences, neither visible on DAVIS itself: the official code
indexes decay bins as uint8, which wraps beyond 256 evaluated frames (we do
not); and it builds an even-sized kernel for a fractional ``bound_th >= 1``
(we refuse one). Dilation uses scipy.ndimage with the disk of
``skimage.morphology.disk``; cv2's dilation, used officially, is the same for
a symmetric kernel with zero outside the image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

#: Bins of the decay statistic, as in the official ``db_statistics``.
DECAY_BINS = 4


@dataclass(frozen=True)
class Scores:
    """Mean, recall and decay of one measure (J or F) of one object, or their means.

    >>> Scores(mean=0.8, recall=1.0, decay=0.1).mean
    0.8
    """

    mean: float
    recall: float
    decay: float


@dataclass(frozen=True)
class JF:
    """J and F statistics together; ``jf`` is the headline J&F.

    >>> JF(Scores(0.8, 1.0, 0.0), Scores(0.6, 1.0, 0.0)).jf
    0.7
    """

    j: Scores
    f: Scores

    @property
    def jf(self) -> float:
        return (self.j.mean + self.f.mean) / 2


@dataclass(frozen=True)
class VideoScores:
    """Per-object statistics of one video and their means over the objects.

    >>> gt = {1: np.ones((3, 4, 4), bool)}
    >>> evaluate_video(gt, gt).mean.jf
    1.0
    """

    objects: Mapping[int, JF]
    mean: JF


def disk(radius: int) -> np.ndarray:
    """Boolean disk footprint, ``skimage.morphology.disk(radius)`` without skimage.

    >>> disk(1).astype(int).tolist()
    [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    """
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary map of a binary ``[H, W]`` mask (Martin's ``seg2bmap``).

    A pixel is on the boundary when it differs from its right, lower or
    lower-right neighbour, which puts the boundary half a pixel towards the
    origin from the true edge. The image border is not a boundary: on the last
    row only the right neighbour counts, on the last column only the lower one,
    and the bottom-right pixel never is.

    >>> m = np.zeros((5, 5), bool); m[2:4, 2:4] = True
    >>> seg2bmap(m).astype(int)[1:5, 1:5].tolist()  # a 3x3 ring around (1, 1)..(3, 3)
    [[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    """
    seg = np.asarray(mask, bool)
    if seg.ndim != 2:
        raise ValueError(f"seg2bmap takes one [H, W] mask, got shape {seg.shape}")
    right = np.zeros_like(seg)
    right[:, :-1] = seg[:, :-1] != seg[:, 1:]
    down = np.zeros_like(seg)
    down[:-1, :] = seg[:-1, :] != seg[1:, :]
    diagonal = np.zeros_like(seg)
    diagonal[:-1, :-1] = seg[:-1, :-1] != seg[1:, 1:]
    bmap = right | down | diagonal
    bmap[-1, :] = right[-1, :]
    bmap[:, -1] = down[:, -1]
    bmap[-1, -1] = False
    return bmap


def db_eval_iou(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None
) -> float | np.ndarray:
    """Region similarity J of ``[H, W]`` masks, or per frame of ``[T, H, W]`` ones.

    >>> gt = np.zeros((4, 4), bool); gt[:2] = True
    >>> pred = np.zeros((4, 4), bool); pred[1:3] = True
    >>> db_eval_iou(gt, pred), db_eval_iou(gt & False, pred & False)  # 4/12; both empty
    (0.3333333333333333, 1.0)
    """
    gt, pred, keep = _checked(gt, pred, void)
    inter = np.sum(gt & pred & keep, axis=(-2, -1))
    union = np.sum((gt | pred) & keep, axis=(-2, -1))
    j = np.divide(inter, union, out=np.ones(union.shape), where=union > 0)
    return float(j) if j.ndim == 0 else j


def db_eval_boundary(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None, bound_th: float = 0.008
) -> float | np.ndarray:
    """Boundary accuracy F of ``[H, W]`` masks, or per frame of ``[T, H, W]`` ones.

    >>> gt = np.zeros((20, 20), bool); gt[5:10, 5:10] = True
    >>> db_eval_boundary(gt, np.roll(gt, 1, axis=1))  # within the 1-pixel tolerance
    1.0
    """
    gt, pred, keep = _checked(gt, pred, void)
    if gt.ndim == 2:
        return _f_measure(gt & keep, pred & keep, bound_th)
    return np.array(
        [_f_measure(g & k, p & k, bound_th) for g, p, k in zip(gt, pred, keep, strict=True)]
    )


def db_statistics(per_frame: np.ndarray) -> Scores:
    """Mean, recall and decay of one object's per-frame J or F values.

    >>> s = db_statistics(np.arange(10) / 10)  # bins [0:3] and [7:10]: 0.1 - 0.8
    >>> round(s.mean, 2), s.recall, round(s.decay, 2)
    (0.45, 0.4, -0.7)
    """
    values = np.asarray(per_frame, float)
    n = len(values)
    if n == 0:
        return Scores(math.nan, math.nan, math.nan)
    edges = (np.round(np.linspace(1, n, DECAY_BINS + 1) + 1e-10) - 1).astype(int)
    bins = [values[edges[i] : edges[i + 1] + 1] for i in range(DECAY_BINS)]
    return Scores(
        mean=float(np.mean(values)),
        recall=float(np.mean(values > 0.5)),
        decay=float(np.mean(bins[0]) - np.mean(bins[-1])),
    )


def evaluate_video(
    gt: Mapping[int, np.ndarray],
    pred: Mapping[int, np.ndarray],
    *,
    skip_first_last: bool = True,
    bound_th: float = 0.008,
) -> VideoScores:
    """J&F of one video: ``{obj_id: [T, H, W] mask}`` for the ground truth and prediction.

    ``skip_first_last`` drops frames 0 and T-1 as the semi-supervised benchmark
    does; turn it off to score every frame of a clip that is not a DAVIS sequence.

    >>> gt = {1: np.zeros((4, 8, 8), bool)}; gt[1][:, 2:6, 2:6] = True
    >>> pred = {1: gt[1].copy()}; pred[1][0] = False; pred[1][3] = False  # frames not scored
    >>> s = evaluate_video(gt, pred)
    >>> s.objects[1].j.mean, s.mean.jf
    (1.0, 1.0)
    """
    extra = sorted(set(pred) - set(gt))
    if extra:
        raise ValueError(
            f"predicted objects {extra} are not in the ground truth {sorted(gt)}; "
            "semi-supervised evaluation scores the ground truth's objects only, drop them"
        )
    objects: dict[int, JF] = {}
    for obj_id in sorted(gt):
        g = np.asarray(gt[obj_id], bool)
        if g.ndim != 3:
            raise ValueError(f"object {obj_id}: masks must be [T, H, W], got shape {g.shape}")
        p = np.asarray(pred[obj_id], bool) if obj_id in pred else np.zeros_like(g)
        if p.shape != g.shape:
            raise ValueError(f"object {obj_id}: prediction {p.shape} != ground truth {g.shape}")
        if skip_first_last:
            if len(g) < 3:
                raise ValueError(
                    f"object {obj_id}: {len(g)} frames leave none once the first "
                    "and last are dropped; pass skip_first_last=False"
                )
            g, p = g[1:-1], p[1:-1]
        objects[obj_id] = JF(
            j=db_statistics(db_eval_iou(g, p)),
            f=db_statistics(db_eval_boundary(g, p, bound_th=bound_th)),
        )
    return VideoScores(objects=objects, mean=_mean_over(objects.values()))


def summarize(videos: Iterable[VideoScores]) -> JF:
    """Dataset J&F: means over all objects of all videos, as the benchmark reports.

    >>> m = np.zeros((3, 4, 4), bool); m[:, 1:3, 1:3] = True
    >>> one = evaluate_video({1: m, 2: m}, {1: m})  # object 2 missing: J = F = 0
    >>> two = evaluate_video({1: m}, {1: m})
    >>> summarize([one, two]).f.mean  # (1 + 0 + 1) / 3 objects, not (0.5 + 1) / 2 videos
    0.6666666666666666
    """
    return _mean_over(jf for video in videos for jf in video.objects.values())


def _mean_over(objects: Iterable[JF]) -> JF:
    items = list(objects)
    if not items:
        nan = Scores(math.nan, math.nan, math.nan)
        return JF(nan, nan)

    def mean(pick: str) -> Scores:
        rows = [getattr(item, pick) for item in items]
        return Scores(*(float(np.mean([getattr(r, f.name) for r in rows])) for f in fields(Scores)))

    return JF(j=mean("j"), f=mean("f"))


def _f_measure(gt: np.ndarray, pred: np.ndarray, bound_th: float) -> float:
    """F of one frame (void already removed from both masks)."""
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(
                f"bound_th >= 1 is a radius in pixels and must be whole, got {bound_th}"
            )
        radius = int(bound_th)
    else:
        radius = math.ceil(bound_th * math.hypot(*gt.shape))
    gt_b, pred_b = seg2bmap(gt), seg2bmap(pred)
    n_gt, n_pred = int(gt_b.sum()), int(pred_b.sum())
    if n_gt == 0 or n_pred == 0:
        return 1.0 if n_gt == n_pred else 0.0
    # Only pixels within ``radius`` of a boundary pixel can change: dilate that box,
    # not the frame (the same counts, tens of times faster on small objects).
    rows, cols = np.nonzero(gt_b | pred_b)
    y0, y1 = max(rows.min() - radius, 0), rows.max() + radius + 1
    x0, x1 = max(cols.min() - radius, 0), cols.max() + radius + 1
    gt_b, pred_b = gt_b[y0:y1, x0:x1], pred_b[y0:y1, x0:x1]
    footprint = disk(radius)
    gt_near = ndimage.binary_dilation(gt_b, structure=footprint)
    pred_near = ndimage.binary_dilation(pred_b, structure=footprint)
    precision = np.sum(pred_b & gt_near) / n_pred
    recall = np.sum(gt_b & pred_near) / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def _checked(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean gt, pred and kept-pixel masks of one shape, or a ValueError."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    if gt.shape != pred.shape or gt.ndim not in (2, 3):
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} must both be [H, W] or [T, H, W]")
    keep = np.ones_like(gt) if void is None else ~np.asarray(void, bool)
    if keep.shape != gt.shape:
        raise ValueError(f"void {keep.shape} must have the masks' shape {gt.shape}")
    return gt, pred, keep
