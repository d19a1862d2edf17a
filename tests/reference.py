"""The official SAM 2 predictor as the reference our outputs must equal.

The official ``SAM2VideoPredictor`` reads frames from a folder through its own
JPEG-folder loader. PIL opens by content, so lossless PNG bytes under ``.jpg``
names reach it unchanged: both sides see the same decoded pixels and each
prepares them with its own code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sam_batch.plan.prompts import Prompt

Logits = dict[int, dict[int, torch.Tensor]]  # frame -> obj_id -> [H, W] video-res logits


def official_pass(
    predictor: torch.nn.Module,
    frames: np.ndarray,
    prompts: list[Prompt],
    folder: Path,
    bf16: bool = False,
) -> Logits:
    folder.mkdir(exist_ok=True)
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / f"{i:05d}.jpg", format="PNG")
    logits: Logits = {}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        state = predictor.init_state(str(folder))
        for p in prompts:
            if p.mask_rle is not None:
                predictor.add_new_mask(state, p.frame, p.obj_id, torch.from_numpy(p.mask()))
            else:
                predictor.add_new_points_or_box(
                    state,
                    p.frame,
                    p.obj_id,
                    points=[list(xy) for xy in p.points] or None,
                    labels=list(p.labels) or None,
                    box=list(p.box) if p.box is not None else None,
                )
        for frame_idx, obj_ids, masks in predictor.propagate_in_video(state):
            logits[frame_idx] = {o: masks[k, 0].float().clone() for k, o in enumerate(obj_ids)}
    return logits
