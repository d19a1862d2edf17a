"""Score a sam_batch dataset against ground truth with DAVIS 2017 semi-supervised J&F.

The metric is :mod:`sam_batch.evaluation.metrics.davis`, rule for rule the official one;
this module only feeds it. Ground truth is either a folder of DAVIS palette
PNG folders (``<gt>/<video>/00000.png``, the layout of DAVIS ``Annotations``,
of ``synthetic.write_davis_png`` and of our ``davis`` export) or another
sam_batch dataset. Videos are read one at a time and frame by frame, never as
``[T, H, W]`` stacks: per frame and object the metric's own ``db_eval_iou``
and ``db_eval_boundary`` are computed and only those numbers are kept, then
``db_statistics`` makes each object's mean, recall and decay and
``summarize`` the means over objects. The result equals
``metrics.evaluate_video`` on the whole stacks, which a test checks.

What is scored, as in the benchmark:

- the ground truth's videos (``videos`` to pick some); one the prediction
  lacks or that failed is scored as an empty prediction (J = F = 0 where
  the truth has an object) and listed in ``EvalReport.missing``;
- the ground truth's frames (every PNG there is, or every frame of a dataset
  video), minus the first and the last (``skip_first_last``);
- the ground truth's objects: every id that has pixels on any ground-truth
  frame (DAVIS gives them all on frame 0; entering objects count too); an
  object the prediction lacks scores 0 where it is visible. A predicted
  object the truth lacks is an error, as in the official code, unless
  ``ignore_extra``;
- PNG value 255 is void: those pixels count for neither J nor F.

Predicted masks may overlap (SAM 2 tracks objects independently); they are
scored as they are, or, with ``exclusive=True``, after the lower id wins each
overlapping pixel, which is what scoring our ``davis`` PNG export gives.

>>> report = evaluate("s3://bucket/run", "/data/DAVIS/Annotations/480p")   # doctest: +SKIP
>>> print(report.table())                                                  # doctest: +SKIP
>>> report.overall.jf                                                      # doctest: +SKIP
0.874
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from sam_batch.dataset.reader import Dataset, MaskRow
from sam_batch.dataset.rle import encode as rle_encode
from sam_batch.errors import SamBatchError
from sam_batch.evaluation.metrics import (
    JF,
    Scores,
    VideoScores,
    db_eval_boundary,
    db_eval_iou,
    db_statistics,
    summarize,
)
from sam_batch.evaluation.metrics.identity import identity_metrics
from sam_batch.evaluation.truth import DatasetTruth, PngTruth, open_truth
from sam_batch.export.davis import label_map


@dataclass(frozen=True)
class EvalReport:
    """J&F per object, per video (means over its objects) and overall (over all objects).

    ``frames`` counts the scored frames per video; ``missing`` lists the
    ground-truth videos the prediction had no ``ok`` result for.
    """

    pred_url: str
    gt_url: str
    videos: Mapping[str, VideoScores]
    frames: Mapping[str, int]
    overall: JF
    missing: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-ready: ``{"overall": {"J&F", "J": {mean, recall, decay}, "F"}, "videos"}``.

        >>> s = Scores(1.0, 1.0, 0.0)
        >>> EvalReport("p", "g", {}, {}, JF(s, s)).to_dict()["overall"]["J&F"]
        1.0
        """
        return {
            "pred": self.pred_url,
            "gt": self.gt_url,
            "overall": _jf_dict(self.overall),
            "videos": {
                video_id: {
                    "frames": self.frames[video_id],
                    "mean": _jf_dict(scores.mean),
                    "objects": {str(k): _jf_dict(v) for k, v in scores.objects.items()},
                }
                for video_id, scores in self.videos.items()
            },
            "missing": list(self.missing),
        }

    def table(self) -> str:
        """The DAVIS results table: overall, then each video and its objects (``video_id``)."""
        rows = [("Global", self.overall, sum(self.frames.values()))]
        for video_id, scores in self.videos.items():
            rows.append((video_id, scores.mean, self.frames[video_id]))
            rows += [
                (f"  {video_id}_{k}", jf, self.frames[video_id]) for k, jf in scores.objects.items()
            ]
        width = max(8, *(len(r[0]) for r in rows))
        head = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
        lines = [f"{'Sequence':<{width}}  " + "  ".join(f"{h:>8}" for h in head) + "  Frames"]
        for name, jf, frames in rows:
            values = [jf.jf, jf.j.mean, jf.j.recall, jf.j.decay, jf.f.mean, jf.f.recall, jf.f.decay]
            lines.append(
                f"{name:<{width}}  " + "  ".join(f"{v:8.3f}" for v in values) + f"  {frames:>6}"
            )
        if self.missing:
            lines.append(f"missing from the prediction (scored empty): {', '.join(self.missing)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _jf_dict(jf: JF) -> dict:
    def scores(s: Scores) -> dict:
        return {"mean": s.mean, "recall": s.recall, "decay": s.decay}

    return {"J&F": jf.jf, "J": scores(jf.j), "F": scores(jf.f)}


def evaluate(
    pred_url: str,
    gt: str,
    *,
    videos: Iterable[str] | None = None,
    storage_options: dict | None = None,
    skip_first_last: bool = True,
    bound_th: float = 0.008,
    exclusive: bool = False,
    ignore_extra: bool = False,
) -> EvalReport:
    """DAVIS 2017 semi-supervised J&F of the dataset at ``pred_url`` against ``gt``.

    ``storage_options`` (fsspec) serve both. ``skip_first_last`` and
    ``bound_th`` are the metric's (:func:`sam_batch.evaluation.metrics.evaluate_video`).

    >>> evaluate("/runs/davis-val", "/data/DAVIS/Annotations/480p").overall.jf  # doctest: +SKIP
    0.874
    """
    pred = Dataset(pred_url, storage_options)
    truth = open_truth(gt, storage_options)
    available = truth.video_ids()
    chosen = (
        available
        if videos is None
        else list(dict.fromkeys([videos] if isinstance(videos, str) else videos))
    )
    absent = [v for v in chosen if v not in available]
    if absent:
        raise SamBatchError(
            f"no ground truth for {', '.join(map(repr, absent))} in {truth.url} "
            f"(it has: {', '.join(available) or 'nothing'})"
        )
    predicted = set(pred.video_ids("ok"))
    scores, frames = {}, {}
    for video_id in chosen:
        scores[video_id], frames[video_id] = score_video(
            truth,
            video_id,
            pred if video_id in predicted else None,
            skip_first_last=skip_first_last,
            bound_th=bound_th,
            exclusive=exclusive,
            ignore_extra=ignore_extra,
        )
    return EvalReport(
        pred_url=pred.url,
        gt_url=truth.url,
        videos=scores,
        frames=frames,
        overall=summarize(scores.values()),
        missing=tuple(v for v in chosen if v not in predicted),
    )


def identity_f1(pred_url: str, gt: str, *, storage_options: dict | None = None,
                iou_threshold: float = 0.5) -> float:
    """IDF1 of a dataset's tracks against the truth's objects, pooled over the truth's videos.

    J&F scores a prompted run, whose ids are the truth's; a discovery run
    invents its own ids, so it is scored by identity instead: each predicted
    track is matched to at most one true object for the whole video (IoU at
    least ``iou_threshold`` on a frame counts that frame), and IDF1 is the
    share of detections that carry the right identity. A video the
    prediction lacks counts as all misses.
    """
    pred = Dataset(pred_url, storage_options)
    truth = open_truth(gt, storage_options)
    predicted = set(pred.video_ids("ok"))
    idtp = idfp = idfn = 0
    for video_id in truth.video_ids():
        ref: dict[int, dict[int, str]] = {}
        shape = (0, 0)
        for t, masks, _void, frame_shape in truth.iter(video_id):
            ref[t] = {k: rle_encode(m).rle for k, m in masks.items()}
            shape = frame_shape
        # RLE strings only, frame by frame (masks are decoded one frame at a time).
        ours = {t: {k: m.rle for k, m in rows.items() if m.area > 0}
                for t, rows in pred.iter_frames(video_id)} if video_id in predicted else {}
        m = identity_metrics(ours, ref, *shape, iou_threshold=iou_threshold)
        idtp, idfp, idfn = idtp + m.idtp, idfp + m.idfp, idfn + m.idfn
    return 2 * idtp / max(2 * idtp + idfp + idfn, 1)


def score_video(
    truth: PngTruth | DatasetTruth,
    video_id: str,
    pred: Dataset | None,
    *,
    skip_first_last: bool = True,
    bound_th: float = 0.008,
    exclusive: bool = False,
    ignore_extra: bool = False,
) -> tuple[VideoScores, int]:
    """One video's scores and the number of frames scored (``pred`` None: an empty prediction)."""
    scored = _scored_frames(truth, video_id, skip_first_last)
    predicted = _Predictions(pred, video_id, exclusive)
    j: dict[int, list[float]] = {}
    f: dict[int, list[float]] = {}
    in_truth: set[int] = set()
    n = 0
    for t, gt_masks, void, shape in truth.iter(video_id):
        pred_masks = predicted.at(t)
        in_truth.update(gt_masks)
        _check_shapes(video_id, t, pred_masks, shape)
        if t not in scored:
            continue
        for k in set(gt_masks) | set(pred_masks):
            if k not in j:  # neither had it on the frames scored so far: J = F = 1 there
                j[k], f[k] = [1.0] * n, [1.0] * n
        empty = np.zeros(shape, bool)
        for k in j:
            g = gt_masks.get(k, empty)
            p = pred_masks.get(k, empty)
            j[k].append(float(db_eval_iou(g, p, void)))
            f[k].append(float(db_eval_boundary(g, p, void, bound_th=bound_th)))
        n += 1
    extra = sorted(predicted.visible - in_truth)
    if extra and not ignore_extra:
        raise SamBatchError(
            f"video {video_id!r}: predicted objects {extra} are not in the ground truth "
            f"{sorted(in_truth)}; the benchmark scores the truth's objects only "
            "(pass ignore_extra=True to leave them out)"
        )
    return _video_scores(j, f, sorted(in_truth), n), n


def _scored_frames(truth: PngTruth | DatasetTruth, video_id: str,
                   skip_first_last: bool) -> set[int]:
    """The ground-truth frames scored: all, or (the benchmark's way) all but the first and last."""
    frame_ids = truth.frames(video_id)
    if skip_first_last and len(frame_ids) < 3:
        raise SamBatchError(
            f"video {video_id!r}: {len(frame_ids)} ground-truth frames leave none once the "
            "first and last are dropped; pass skip_first_last=False"
        )
    return set(frame_ids[1:-1] if skip_first_last else frame_ids)


def _check_shapes(video_id: str, t: int, pred_masks: dict[int, np.ndarray],
                  shape: tuple[int, int]) -> None:
    for k, m in pred_masks.items():
        if m.shape != shape:
            raise SamBatchError(
                f"video {video_id!r} frame {t}: predicted object {k} is "
                f"{m.shape[0]}x{m.shape[1]}, the ground truth {shape[0]}x{shape[1]}"
            )


def _video_scores(j: dict[int, list[float]], f: dict[int, list[float]], objects: list[int],
                  n: int) -> VideoScores:
    """Per-object statistics of J and F over ``n`` frames, and their mean over objects."""
    scores = {
        k: JF(
            j=db_statistics(np.array(j.get(k, [1.0] * n))),
            f=db_statistics(np.array(f.get(k, [1.0] * n))),
        )
        for k in objects
    }
    nan = Scores(math.nan, math.nan, math.nan)
    mean = summarize([VideoScores(objects=scores, mean=JF(nan, nan))])  # the mean over objects
    return VideoScores(objects=scores, mean=mean)


class _Predictions:
    """The predicted masks of one video, looked up frame by frame in increasing order."""

    def __init__(self, pred: Dataset | None, video_id: str, exclusive: bool):
        self._rows: Iterator[tuple[int, dict[int, MaskRow]]] = (
            iter(pred.iter_frames(video_id)) if pred is not None else iter(())
        )
        self._pending = next(self._rows, None)
        self.exclusive = exclusive
        self.visible: set[int] = set()

    def at(self, t: int) -> dict[int, np.ndarray]:
        while self._pending is not None and self._pending[0] < t:
            self._pending = next(self._rows, None)
        if self._pending is None or self._pending[0] != t:
            return {}
        masks = {k: m.mask() for k, m in self._pending[1].items() if m.area > 0}
        if self.exclusive and masks:
            height, width = next(iter(masks.values())).shape
            labels = label_map(masks, height, width)
            masks = {k: labels == k for k in masks}
        self.visible.update(k for k, m in masks.items() if m.any())
        return masks
