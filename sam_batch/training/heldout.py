"""Quick held-out score during training: J&F through the real inference path.

The checkpoint to ship is the one that tracks best on videos it never saw, so
this runs the model the way ``sam-batch run`` does (``ChunkTracker``: the
video predictor's own prompt and propagation code, frames prepared as sam2's
loader prepares them) on held-out synthetic videos (seeds below
``HELD_OUT_SEEDS_END``), prompted with first-visible-frame masks (the DAVIS
semi-supervised rule) and boxes, scored with the DAVIS metric
(``sam_batch.evaluation.metrics``: J and F per object and frame, first and last frame
skipped). It skips Ray, Parquet and video encoding to stay a few seconds.
"""

from __future__ import annotations

import numpy as np
import torch

from sam_batch.evaluation.metrics import db_eval_boundary, db_eval_iou
from sam_batch.plan.prompts import prompts_from_dicts
from sam_batch.synthetic import first_frame_prompts, generate
from sam_batch.track.frames import ArrayFrames
from sam_batch.track.model import LoadedModel, ModelIdentity
from sam_batch.track.tracker import ChunkTracker


def heldout_jf(model: torch.nn.Module, seeds: list[int], kinds: tuple[str, ...] = ("mask", "box"),
               size: int = 256, frames: int = 24) -> dict[str, float]:
    """Mean J&F per prompt kind over ``seeds`` (and ``"mean"`` over kinds).

    ``model`` is the sam2 video predictor being trained; it is put in eval
    mode for the measurement and back in train mode after.
    """
    was_training = model.training
    model.eval()
    identity = ModelIdentity("training", int(model.image_size), "training", "", "float32", False)
    tracker = ChunkTracker(LoadedModel(model, identity, torch.device("cpu")))
    scores: dict[str, float] = {}
    try:
        with torch.inference_mode():
            for kind in kinds:
                per_video = [_video_jf(tracker, seed, kind, size, frames) for seed in seeds]
                scores[kind] = float(np.mean(per_video))
    finally:
        model.train(was_training)
    scores["mean"] = float(np.mean([scores[k] for k in kinds]))
    return scores


def _video_jf(tracker: ChunkTracker, seed: int, kind: str, size: int, frames: int) -> float:
    clip = generate(seed, width=size, height=size, num_frames=frames, lookalike_crossing=seed % 2)
    prompts = prompts_from_dicts(first_frame_prompts(clip, kind, min_area=16))
    video = ArrayFrames(clip.frames)
    j: dict[int, list[float]] = {}
    f: dict[int, list[float]] = {}
    for out in tracker.track(tracker.start(video, prompts), video, frames):
        if not 0 < out.frame_idx < frames - 1:
            continue
        for obj, mask in zip(out.obj_ids, out.masks, strict=True):
            gt = clip.masks[obj][out.frame_idx]
            j.setdefault(obj, []).append(float(db_eval_iou(gt, mask)))
            f.setdefault(obj, []).append(float(db_eval_boundary(gt, mask)))
    per_obj = [(np.mean(j[o]) + np.mean(f[o])) / 2 for o in j]
    return float(np.mean(per_obj)) if per_obj else 0.0
