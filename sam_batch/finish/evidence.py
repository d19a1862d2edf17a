"""The stitcher's evidence (``stitch`` rule 1): how far two segments' tracks agree.

On the frames two next segments share, both segmented the same pixels. Left
track A and right track B agree by their volumetric IoU ``Σ|A∩B| / Σ|A∪B|``
over those frames (no mask on a frame = empty; 0 when both are always empty),
computed from the RLE strings as read back from the Parquet parts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from sam_batch.dataset.rle import to_coco
from sam_batch.finish.segments import LocalTrack


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
