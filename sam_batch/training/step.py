"""One SAM 2 training step on one clip, through the model's own tracking code.

As ``SAM2Train.forward_tracking`` (sam2's ``training/model/sam2.py``) does: all
frames go through the image encoder once; the prompted frame is processed
first, then the others in time order, each by the model's ``_track_step``
(memory attention over the memories of the frames done so far, SAM heads),
and the memory encoder runs on every prediction so later frames attend to the
model's own earlier outputs, with gradients through the whole clip. Point and
box prompts get multimask outputs on the prompted frame and, sometimes, one
corrective click on the error region (SAM 2's iterative point sampling).

One deviation, for training from scratch: the losses read the mask decoder's
masks *before* sam2 overwrites them with -1024 where the presence head says
"no object". SAM 2 starts from a trained image model, so that override
rarely bites; a random model says "no object" often, and the mask head would
then get no gradient and collapse to empty masks. Tracking, memory and
inference still use the overwritten masks exactly as sam2 does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from sam_batch.training.data import Clip, correction_click
from sam_batch.training.losses import frame_loss


class _DecoderTap:
    """The mask decoder's raw outputs of its latest call (masks, ious, tokens, presence)."""

    last: tuple | None = None

    def __call__(self, module: torch.nn.Module, args: tuple, output: tuple) -> None:
        self.last = output


@contextlib.contextmanager
def _tap(model: torch.nn.Module) -> Iterator[_DecoderTap]:
    tap = _DecoderTap()
    handle = model.sam_mask_decoder.register_forward_hook(tap)
    try:
        yield tap
    finally:
        handle.remove()


def train_step(model: torch.nn.Module, clip: Clip, rng: np.random.Generator | None = None,
               correct_prob: float = 0.0) -> dict[str, torch.Tensor]:
    """Loss terms of one clip (each averaged over frames and objects), graph attached.

    ``model`` is a ``SAM2Base`` (our video predictor) in train mode.
    """
    rng = rng or np.random.default_rng(0)
    n, num_frames = clip.masks.shape[:2]
    size = model.image_size
    backbone_out = model.forward_image(clip.images)
    _, feats, pos, sizes = model._prepare_backbone_features(backbone_out)
    output_dict: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    totals: dict[str, torch.Tensor] = {}
    counted = 0

    def add_loss(tap: _DecoderTap, t: int) -> None:
        nonlocal counted
        low_res, ious, _, presence = tap.last
        logits = F.interpolate(low_res.float(), size=(size, size), mode="bilinear",
                               align_corners=False)
        for k, v in frame_loss(logits, ious, presence, clip.masks[:, t]).items():
            totals[k] = totals.get(k, 0) + v
        counted += 1

    order = [clip.cond_frame] + [t for t in range(num_frames) if t != clip.cond_frame]
    with _tap(model) as tap:
        for t in order:
            cond = t == clip.cond_frame
            frame_feats = [x[:, t:t + 1].repeat(1, n, 1) for x in feats]
            frame_pos = [x[:, t:t + 1].repeat(1, n, 1) for x in pos]
            points = masks = None
            if cond and clip.prompt_kind == "mask":
                masks = clip.masks[:, t:t + 1].float()
            elif cond:
                points = {"point_coords": clip.point_coords, "point_labels": clip.point_labels}
            out, sam_outputs, _, _ = model._track_step(
                t, cond, frame_feats, frame_pos, sizes, points, masks, output_dict,
                num_frames, False, None)
            if masks is None:  # a mask prompt is its own output: nothing to learn there
                add_loss(tap, t)
            if points is not None and rng.random() < correct_prob:
                # One corrective click where the first answer is wrong, fed back with
                # the previous low-res logits, as in SAM 2's interactive training.
                pred = sam_outputs[4][:, 0] > 0
                c, lab = correction_click(pred, clip.masks[:, t], rng)
                points = {"point_coords": torch.cat([points["point_coords"], c], 1),
                          "point_labels": torch.cat([points["point_labels"], lab], 1)}
                out, sam_outputs, _, _ = model._track_step(
                    t, cond, frame_feats, frame_pos, sizes, points, None, output_dict,
                    num_frames, False, sam_outputs[3].detach())
                add_loss(tap, t)
            _, _, _, low, high, obj_ptr, presence = sam_outputs
            out["pred_masks"], out["pred_masks_high_res"], out["obj_ptr"] = low, high, obj_ptr
            model._encode_memory_in_output(frame_feats, sizes, points, True, high, presence, out)
            output_dict["cond_frame_outputs" if cond else "non_cond_frame_outputs"][t] = out
    return {k: v / max(counted, 1) for k, v in totals.items()}
