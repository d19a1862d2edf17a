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
from collections.abc import Iterator, Sequence

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


def train_step(model: torch.nn.Module, clips: Clip | Sequence[Clip],
               rng: np.random.Generator | None = None, correct_prob: float = 0.0
               ) -> dict[str, torch.Tensor]:
    """Loss terms of a batch of clips (each averaged over objects and frames), graph
    attached. ``model`` is a ``SAM2Base`` (our video predictor) in train mode.

    The image encoder runs once over every frame of the batch. Objects are then
    tracked as SAM 2 tracks them, each on its own, but those that share a prompted
    frame and a prompt kind go through the model as one batch, whatever clip they
    come from: the losses are those of each clip alone (averaged over object-frames),
    in fewer, larger calls of the tracking heads (what a GPU wants).
    """
    rng = rng or np.random.default_rng(0)
    clips = [clips] if isinstance(clips, Clip) else list(clips)
    num_frames = clips[0].masks.shape[1]
    if any(c.masks.shape[1] != num_frames for c in clips):
        raise ValueError("every clip of a batch needs the same number of frames")
    backbone_out = model.forward_image(torch.cat([c.images for c in clips]))
    _, feats, pos, sizes = model._prepare_backbone_features(backbone_out)
    groups: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for b, clip in enumerate(clips):
        for cond_frame, rows in clip.groups():
            groups.setdefault((cond_frame, clip.prompt_kind), []).extend((b, i) for i in rows)
    totals: dict[str, torch.Tensor] = {}
    weight = 0
    for (cond_frame, kind), rows in sorted(groups.items()):
        group = _Group(clips, rows, kind, cond_frame, num_frames)
        losses, counted = _track_group(model, group, feats, pos, sizes, rng, correct_prob)
        for k, v in losses.items():
            totals[k] = totals.get(k, 0) + v
        weight += counted
    return {k: v / max(weight, 1) for k, v in totals.items()}


class _Group:
    """Objects of a batch prompted on the same frame with the same kind of prompt."""

    def __init__(self, clips: list[Clip], rows: list[tuple[int, int]], kind: str,
                 cond_frame: int, num_frames: int):
        self.kind, self.cond_frame, self.num_frames = kind, cond_frame, num_frames
        self.truth = torch.stack([clips[b].masks[i] for b, i in rows])  # [n, T, S, S]
        self.clip_of = torch.tensor([b for b, _ in rows])
        width = max(clips[b].point_coords.shape[1] for b, _ in rows)
        self.coords = torch.zeros(len(rows), width, 2)
        self.labels = torch.full((len(rows), width), -1, dtype=torch.int32)
        for r, (b, i) in enumerate(rows):
            c = clips[b]
            self.coords[r, :c.point_coords.shape[1]] = c.point_coords[i]
            self.labels[r, :c.point_labels.shape[1]] = c.point_labels[i]

    def __len__(self) -> int:
        return len(self.truth)

    def frame(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Each object's own clip's frame ``t`` of ``[HW, clips * T, C]`` features."""
        return x[:, self.clip_of * self.num_frames + t]


def _track_group(model: torch.nn.Module, group: _Group, feats: list, pos: list, sizes: list,
                 rng: np.random.Generator, correct_prob: float
                 ) -> tuple[dict[str, torch.Tensor], int]:
    """Summed loss terms of one group's objects over the clip, and how many
    object-frames they sum over."""
    n, num_frames, truth = len(group), group.num_frames, group.truth
    size = model.image_size
    output_dict: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    totals: dict[str, torch.Tensor] = {}
    counted = 0

    def add_loss(tap: _DecoderTap, t: int) -> None:
        nonlocal counted
        low_res, ious, _, presence = tap.last
        logits = F.interpolate(low_res.float(), size=(size, size), mode="bilinear",
                               align_corners=False)
        for k, v in frame_loss(logits, ious, presence, truth[:, t]).items():
            totals[k] = totals.get(k, 0) + v * n
        counted += n

    order = [group.cond_frame] + [t for t in range(num_frames) if t != group.cond_frame]
    with _tap(model) as tap:
        for t in order:
            cond = t == group.cond_frame
            frame_feats = [group.frame(x, t) for x in feats]
            frame_pos = [group.frame(x, t) for x in pos]
            points = masks = None
            if cond and group.kind == "mask":
                masks = truth[:, t:t + 1].float()
            elif cond:
                points = {"point_coords": group.coords, "point_labels": group.labels}
            out, sam_outputs, _, _ = model._track_step(
                t, cond, frame_feats, frame_pos, sizes, points, masks, output_dict,
                num_frames, False, None)
            if masks is None:  # a mask prompt is its own output: nothing to learn there
                add_loss(tap, t)
            if points is not None and rng.random() < correct_prob:
                # One corrective click where the first answer is wrong, fed back with
                # the previous low-res logits, as in SAM 2's interactive training.
                pred = sam_outputs[4][:, 0] > 0
                c, lab = correction_click(pred, truth[:, t], rng)
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
    return totals, counted
