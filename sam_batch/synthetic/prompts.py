"""Prompts derived from ground truth, in the project's manifest format.

A prompt is what a user would give SAM 2 for one object on one frame: the
whole mask (COCO RLE), a box, or a positive click. Deriving them from exact
ground truth lets a benchmark separate tracking errors from prompting errors,
and lets a test state where the truth is.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy import ndimage

from sam_batch.dataset.rle import encode
from sam_batch.synthetic.render import Clip, render_frame
from sam_batch.synthetic.scene import Scene
from sam_batch.synthetic.writers import frames_of

PromptKind = Literal["mask", "box", "points"]


def _nonempty(mask: np.ndarray) -> None:
    if mask.ndim != 2 or not mask.any():
        raise ValueError(f"a prompt needs a non-empty 2-D mask, got shape {mask.shape}")


def mask_prompt(obj_id: int, frame: int, mask: np.ndarray) -> dict[str, Any]:
    """``{"obj_id", "frame", "mask": {"size": [H, W], "counts": str}}``.

    >>> m = np.zeros((4, 6), bool); m[1:3, 2:5] = True
    >>> p = mask_prompt(1, 0, m); p["mask"]["size"], isinstance(p["mask"]["counts"], str)
    ([4, 6], True)
    """
    _nonempty(mask)
    e = encode(mask.astype(bool))
    return {
        "obj_id": int(obj_id),
        "frame": int(frame),
        "mask": {"size": [e.height, e.width], "counts": e.rle},
    }


def box_prompt(obj_id: int, frame: int, mask: np.ndarray) -> dict[str, Any]:
    """``{"obj_id", "frame", "box": [x0, y0, x1, y1]}``, the mask's tight box.

    Corners are pixel indices of the first and last covered column and row
    (inclusive), as SAM 2 derives boxes from masks in training
    (``sam2.utils.misc.mask_to_box``); COCO ``bbox`` ends one pixel later. A
    mask one pixel thin (an object entering at the frame's edge) gets a box one
    pixel wide there, not an empty one, which no manifest accepts.

    >>> m = np.zeros((4, 6), bool); m[1:3, 2:5] = True
    >>> box_prompt(1, 0, m)["box"]
    [2, 1, 4, 2]
    >>> m = np.zeros((4, 6), bool); m[3, 1:5] = True
    >>> box_prompt(1, 0, m)["box"]
    [1, 3, 4, 4]
    """
    _nonempty(mask)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    x0, y0 = int(cols[0]), int(rows[0])
    box = [x0, y0, max(int(cols[-1]), x0 + 1), max(int(rows[-1]), y0 + 1)]
    return {"obj_id": int(obj_id), "frame": int(frame), "box": box}


def points_prompt(obj_id: int, frame: int, mask: np.ndarray) -> dict[str, Any]:
    """``{"obj_id", "frame", "points": [[x, y]], "labels": [1]}``, one click.

    The click is the pixel farthest from the mask's boundary (the maximum of
    its distance transform; the frame edge counts as boundary), so it is
    well inside even a concave or partly occluded object. ``x, y`` are the
    pixel's column and row.

    >>> m = np.zeros((7, 9), bool); m[1:6, 2:7] = True
    >>> points_prompt(2, 3, m)["points"]
    [[4, 3]]
    """
    _nonempty(mask)
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return {"obj_id": int(obj_id), "frame": int(frame), "points": [[int(x), int(y)]], "labels": [1]}


PROMPT_MAKERS = {"mask": mask_prompt, "box": box_prompt, "points": points_prompt}


def first_visible(source: Clip | Scene, min_area: int = 1) -> dict[int, int]:
    """Each object's first frame with at least ``min_area`` visible pixels.

    Objects that never reach it are missing from the result. Given a scene,
    frames are rendered only until every object has been seen.

    >>> from sam_batch.synthetic.render import generate
    >>> sorted(first_visible(generate(0, width=64, height=64, num_frames=12)))
    [1, 2, 3]
    """
    if isinstance(source, Clip):
        found = {}
        for obj_id, masks in source.masks.items():
            areas = masks.reshape(len(masks), -1).sum(axis=1)
            hits = np.flatnonzero(areas >= min_area)
            if len(hits):
                found[obj_id] = int(hits[0])
        return found
    wanted, found = {o.obj_id for o in source.objects}, {}
    for frame in frames_of(source):
        ids, counts = np.unique(frame.labels, return_counts=True)
        for obj_id, count in zip(ids.tolist(), counts.tolist(), strict=True):
            if obj_id in wanted and obj_id not in found and count >= min_area:
                found[obj_id] = frame.index
        if len(found) == len(wanted):
            break
    return found


def first_frame_prompts(
    source: Clip | Scene, kind: PromptKind = "mask", *, min_area: int = 1
) -> list[dict[str, Any]]:
    """One prompt per object at its first visible frame, sorted by object id.

    ``min_area`` > 1 waits until an entering object shows that many pixels,
    for prompts that a model can act on. An object never visible gets none.

    >>> from sam_batch.synthetic.render import generate
    >>> clip = generate(0, width=64, height=64, num_frames=12)
    >>> [sorted(p) for p in first_frame_prompts(clip, "points")][0]
    ['frame', 'labels', 'obj_id', 'points']
    """
    if kind not in PROMPT_MAKERS:
        raise ValueError(f"kind must be one of {sorted(PROMPT_MAKERS)}, got {kind!r}")
    make = PROMPT_MAKERS[kind]
    firsts = first_visible(source, min_area)
    if isinstance(source, Clip):
        masks = {k: source.masks[k][t] for k, t in firsts.items()}
    else:
        masks = {k: render_frame(source, t).labels == k for k, t in firsts.items()}
    return [make(k, firsts[k], masks[k]) for k in sorted(firsts)]
