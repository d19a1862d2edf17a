"""Identity metrics: does a stitched run keep each object's id as a reference does?

Stitching can be wrong without any mask being wrong: it can hand an object a
new id at a segment boundary, or swap two look-alikes. These metrics compare
the ids of a run (``pred``, e.g. the stitched output) against a reference
(``ref``, e.g. one uninterrupted pass), so they see exactly that.

Input is what the ``masks/`` table holds: ``{frame_idx: {obj_id: rle}}`` plus
the frame's height and width. Masks are never decoded; pycocotools computes
their IoUs on the RLEs. An object is *present* on a frame when its mask is
non-empty: the dataset writes a live object's empty mask as a row with
``area == 0``, which is no detection. A predicted and a reference object
*agree* on a frame when both are present and their mask IoU >= ``iou_threshold``
(0.5).

- IDF1 (Ristani et al. 2016): one global one-to-one matching of predicted and
  reference ids that maximises IDTP, the number of frames on which matched
  pairs agree. IDFP = predicted detections - IDTP, IDFN = reference detections
  - IDTP, IDF1 = 2·IDTP / (2·IDTP + IDFP + IDFN); 1.0 when neither side has a
  detection (nothing to identify, nothing wrong).
- ID switches (CLEAR-MOT, Bernardin & Stiefelhagen 2008): frame by frame, each
  reference object keeps the predicted id it was last matched to if they still
  agree; the others are matched by Hungarian on IoU among agreeing pairs. A
  switch is a reference object matched to another predicted id than at its
  previous match (however long ago). Where masks do not overlap each other this
  equals a plain per-frame Hungarian matching.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from sam_batch.dataset.rle import to_coco

#: ``{frame_idx: {obj_id: rle}}``, the masks of one video as the dataset stores them.
Tracks = Mapping[int, Mapping[int, str]]


@dataclass(frozen=True)
class IdentityMetrics:
    """IDF1 with its counts, ID switches, and the IDF1 matching ``{pred_id: ref_id}``.

    ``frames`` counts the frame indices scored, those without any mask included.

    >>> m = IdentityMetrics(idf1=1.0, idtp=4, idfp=0, idfn=0, id_switches=0, frames=4, matching={})
    >>> m.idf1
    1.0
    """

    idf1: float
    idtp: int
    idfp: int
    idfn: int
    id_switches: int
    frames: int
    matching: Mapping[int, int]


@dataclass(frozen=True)
class BoundaryIdentity:
    """Identity metrics near each boundary frame, and over all those frames at once.

    >>> m = IdentityMetrics(1.0, 0, 0, 0, 0, 0, {})
    >>> BoundaryIdentity(per_boundary={}, overall=m).overall.idf1
    1.0
    """

    per_boundary: Mapping[int, IdentityMetrics]
    overall: IdentityMetrics


@dataclass(frozen=True)
class _Frame:
    """One frame's present ids on each side and the IoUs of all their pairs."""

    pred: list[int]
    ref: list[int]
    iou: np.ndarray  # [len(pred), len(ref)]


def identity_metrics(
    pred: Tracks,
    ref: Tracks,
    height: int,
    width: int,
    *,
    frames: Iterable[int] | None = None,
    iou_threshold: float = 0.5,
) -> IdentityMetrics:
    """IDF1 and ID switches of ``pred`` against ``ref``, on ``frames`` (default: all).

    >>> import numpy as np
    >>> from sam_batch.dataset.rle import encode
    >>> a = np.zeros((8, 8), bool); a[:4] = True
    >>> rle = encode(a).rle
    >>> ref = {0: {1: rle}, 1: {1: rle}}
    >>> m = identity_metrics({0: {7: rle}, 1: {8: rle}}, ref, 8, 8)  # id changes at frame 1
    >>> m.idf1, m.id_switches, dict(m.matching)
    (0.5, 1, {7: 1})
    """
    table = _table(pred, ref, height, width, frames)
    return _score(table, sorted(table), iou_threshold)


def boundary_id_metrics(
    pred: Tracks,
    ref: Tracks,
    height: int,
    width: int,
    boundaries: Sequence[int],
    window: int,
    *,
    iou_threshold: float = 0.5,
) -> BoundaryIdentity:
    """Identity metrics on the frames ``f`` with ``|f - b| <= window``, per boundary ``b``.

    ``overall`` scores the union of those frames as one sequence: one IDF1
    matching for all of them, and a switch between two windows counts in the
    later one, so ``overall.id_switches`` can exceed the per-boundary sum.

    >>> import numpy as np
    >>> from sam_batch.dataset.rle import encode
    >>> a = np.zeros((8, 8), bool); a[:4] = True
    >>> ref = {f: {1: encode(a).rle} for f in range(10)}
    >>> pred = {f: {1 if f < 5 else 2: encode(a).rle} for f in range(10)}
    >>> r = boundary_id_metrics(pred, ref, 8, 8, boundaries=[2, 5], window=1)
    >>> [(b, m.id_switches, m.frames) for b, m in r.per_boundary.items()]
    [(2, 0, 3), (5, 1, 3)]
    """
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    near = {b: set(range(max(b - window, 0), b + window + 1)) for b in boundaries}
    table = _table(pred, ref, height, width, set().union(*near.values()))
    per = {b: _score(table, sorted(near[b] & table.keys()), iou_threshold) for b in near}
    return BoundaryIdentity(per_boundary=per, overall=_score(table, sorted(table), iou_threshold))


def _table(
    pred: Tracks, ref: Tracks, height: int, width: int, frames: Iterable[int] | None
) -> dict[int, _Frame]:
    """IoUs of every frame asked for (default: every frame either side has)."""
    wanted = set(pred) | set(ref) if frames is None else set(frames)
    table = {}
    for f in sorted(wanted):
        pred_ids, pred_rles = _present(pred.get(f, {}), height, width)
        ref_ids, ref_rles = _present(ref.get(f, {}), height, width)
        iou = np.zeros((len(pred_ids), len(ref_ids)))
        if pred_ids and ref_ids:
            iou = np.asarray(mask_utils.iou(pred_rles, ref_rles, [0] * len(ref_rles)), float)
        table[f] = _Frame(pred_ids, ref_ids, iou.reshape(len(pred_ids), len(ref_ids)))
    return table


def _present(masks: Mapping[int, str], height: int, width: int) -> tuple[list[int], list[dict]]:
    """The ids with a non-empty mask on one frame, sorted, and their RLE objects."""
    ids = sorted(masks)
    rles = [to_coco(masks[i], height, width) for i in ids]
    areas = mask_utils.area(rles) if rles else []
    keep = [k for k, area in enumerate(areas) if area > 0]
    return [ids[k] for k in keep], [rles[k] for k in keep]


def _score(table: Mapping[int, _Frame], frames: list[int], threshold: float) -> IdentityMetrics:
    """IDF1 and ID switches over ``frames`` (in order) of a precomputed table."""
    agree: dict[tuple[int, int], int] = {}  # (pred, ref) -> frames they agree on
    n_pred = n_ref = switches = 0
    last: dict[int, int] = {}  # ref id -> pred id at its previous match
    for f in frames:
        fr = table[f]
        n_pred, n_ref = n_pred + len(fr.pred), n_ref + len(fr.ref)
        ok = fr.iou >= threshold
        for i, j in zip(*np.nonzero(ok), strict=True):
            key = (fr.pred[i], fr.ref[j])
            agree[key] = agree.get(key, 0) + 1
        for r, p in _frame_matches(fr, ok, last).items():
            if r in last and last[r] != p:
                switches += 1
            last[r] = p
    matching, idtp = _idf1_matching(agree)
    total = n_pred + n_ref
    return IdentityMetrics(
        idf1=2 * idtp / total if total else 1.0,
        idtp=idtp,
        idfp=n_pred - idtp,
        idfn=n_ref - idtp,
        id_switches=switches,
        frames=len(frames),
        matching=matching,
    )


def _frame_matches(fr: _Frame, ok: np.ndarray, last: Mapping[int, int]) -> dict[int, int]:
    """CLEAR-MOT correspondences ``{ref: pred}`` of one frame."""
    matches: dict[int, int] = {}
    used_pred: set[int] = set()
    for j, r in enumerate(fr.ref):  # keep last correspondences that still agree
        p = last.get(r)
        if p in fr.pred and p not in used_pred and ok[fr.pred.index(p), j]:
            matches[r] = p
            used_pred.add(p)
    rows = [i for i, p in enumerate(fr.pred) if p not in used_pred]
    cols = [j for j, r in enumerate(fr.ref) if r not in matches]
    weight = np.where(ok, fr.iou, 0.0)[np.ix_(rows, cols)]
    for a, b in zip(*linear_sum_assignment(weight, maximize=True), strict=True):
        if weight[a, b] > 0:
            matches[fr.ref[cols[b]]] = fr.pred[rows[a]]
    return matches


def _idf1_matching(agree: Mapping[tuple[int, int], int]) -> tuple[dict[int, int], int]:
    """The one-to-one ``{pred: ref}`` matching with the most agreeing frames, and that count."""
    preds = sorted({p for p, _ in agree})
    refs = sorted({r for _, r in agree})
    counts = np.zeros((len(preds), len(refs)))
    for (p, r), n in agree.items():
        counts[preds.index(p), refs.index(r)] = n
    matching: dict[int, int] = {}
    idtp = 0
    for i, j in zip(*linear_sum_assignment(counts, maximize=True), strict=True):
        if counts[i, j] > 0:
            matching[preds[i]] = refs[j]
            idtp += int(counts[i, j])
    return matching, idtp
