"""Prompts: points with labels, a box, or a mask for one object on one frame.

Coordinates are in original-video pixels (x right, y down), the way users click.
A prompt is checked against its video before any model runs, so a typo in a
manifest fails one video with a message naming the object and frame instead of a
tensor-shape error deep inside SAM 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sam_batch.dataset import rle
from sam_batch.errors import PromptError


@dataclass(frozen=True)
class Prompt:
    """One object's input on one frame.

    >>> p = Prompt.from_dict({"obj_id": 1, "frame": 0, "points": [[10, 20]], "labels": [1]})
    >>> p.validate(num_frames=5, width=64, height=48); p.kind
    'points'
    """

    obj_id: int
    frame: int
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    #: COCO compressed RLE counts of a mask prompt, at the video's size.
    mask_rle: str | None = None
    mask_size: tuple[int, int] | None = None  # (height, width) of the mask prompt

    @property
    def kind(self) -> str:
        if self.mask_rle is not None:
            return "mask"
        return "box" if self.box is not None and not self.points else (
            "points" if self.box is None else "box+points"
        )

    @classmethod
    def from_dict(cls, d: dict) -> Prompt:
        """Read the manifest form: ``{obj_id, frame, points, labels}`` / ``box`` / ``mask``."""
        if not isinstance(d, dict):
            raise PromptError(f"a prompt must be an object with obj_id and frame, got {d!r}")
        unknown = set(d) - {"obj_id", "frame", "points", "labels", "box", "mask"}
        if unknown:
            raise PromptError(f"prompt has unknown field(s) {sorted(unknown)}")
        for key in ("obj_id", "frame"):
            if key not in d:
                raise PromptError(f"prompt is missing {key!r}: {d!r}")
        obj_id, frame = _as_int(d["obj_id"], "obj_id"), _as_int(d["frame"], "frame")
        where = f"prompt for object {obj_id} on frame {frame}"
        points: tuple[tuple[float, float], ...] = ()
        labels: tuple[int, ...] = ()
        if d.get("points") is not None:
            try:
                points = tuple((float(x), float(y)) for x, y in d["points"])
            except (TypeError, ValueError) as e:
                raise PromptError(f"{where}: points must be [[x, y], ...]") from e
            raw_labels = d.get("labels", [1] * len(points))
            try:
                labels = tuple(int(v) for v in raw_labels)
            except (TypeError, ValueError) as e:
                raise PromptError(f"{where}: labels must be a list of 0/1") from e
        elif d.get("labels") is not None:
            raise PromptError(f"{where}: labels given without points")
        box = None
        if d.get("box") is not None:
            try:
                x0, y0, x1, y1 = (float(v) for v in d["box"])
            except (TypeError, ValueError) as e:
                raise PromptError(f"{where}: box must be [x0, y0, x1, y1]") from e
            box = (x0, y0, x1, y1)
        mask_rle = mask_size = None
        if d.get("mask") is not None:
            m = d["mask"]
            try:
                h, w = (int(v) for v in m["size"])
                counts = m["counts"]
            except (TypeError, KeyError, ValueError) as e:
                raise PromptError(f"{where}: mask must be COCO RLE {{size: [h, w], counts}}") from e
            if isinstance(counts, list):  # uncompressed RLE: compress it once here
                from pycocotools import mask as mask_utils

                counts = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)["counts"]
            mask_rle = counts.decode("ascii") if isinstance(counts, bytes) else str(counts)
            mask_size = (h, w)
        prompt = cls(obj_id, frame, points, labels, box, mask_rle, mask_size)
        if not (points or box is not None or mask_rle is not None):
            raise PromptError(f"{where}: give points (with labels), a box, or a mask")
        if mask_rle is not None and (points or box is not None):
            raise PromptError(f"{where}: a mask prompt cannot be combined with points or a box")
        return prompt

    def to_dict(self) -> dict:
        d: dict = {"obj_id": self.obj_id, "frame": self.frame}
        if self.points:
            d["points"] = [list(p) for p in self.points]
            d["labels"] = list(self.labels)
        if self.box is not None:
            d["box"] = list(self.box)
        if self.mask_rle is not None:
            assert self.mask_size is not None
            d["mask"] = {"size": list(self.mask_size), "counts": self.mask_rle}
        return d

    def mask(self) -> np.ndarray:
        assert self.mask_rle is not None and self.mask_size is not None
        return rle.decode(self.mask_rle, *self.mask_size)

    def validate(self, num_frames: int, width: int, height: int) -> None:
        """Raise ``PromptError`` unless this prompt fits a video of this size."""
        where = f"prompt for object {self.obj_id} on frame {self.frame}"
        if self.obj_id < 1:
            raise PromptError(f"{where}: obj_id must be >= 1 (0 is the background in masks)")
        if not 0 <= self.frame < num_frames:
            raise PromptError(
                f"{where}: frame {self.frame} is outside the video (frames 0..{num_frames - 1})"
            )
        if len(self.labels) != len(self.points):
            raise PromptError(
                f"{where}: field 'labels' has {len(self.labels)} labels for "
                f"{len(self.points)} points (one label per point)"
            )
        if any(v not in (0, 1) for v in self.labels):
            raise PromptError(f"{where}: labels must be 1 (object) or 0 (background)")
        for x, y in self.points:
            if not (math.isfinite(x) and math.isfinite(y)):
                raise PromptError(f"{where}: field 'points' has a point ({x:g}, {y:g}) that is "
                                  "not a finite number")
            if not (0 <= x <= width and 0 <= y <= height):
                raise PromptError(
                    f"{where}: point ({x:g}, {y:g}) is outside the {width}x{height} frame"
                )
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not all(math.isfinite(v) for v in self.box):
                raise PromptError(f"{where}: field 'box' {list(self.box)} holds a value that "
                                  "is not a finite number")
            if not (x0 < x1 and y0 < y1):
                raise PromptError(
                    f"{where}: field 'box' {list(self.box)} must be [x0, y0, x1, y1] with "
                    "x0<x1, y0<y1"
                )
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise PromptError(
                    f"{where}: box {list(self.box)} is outside the {width}x{height} frame"
                )
        if self.mask_rle is not None:
            assert self.mask_size is not None
            if self.mask_size != (height, width):
                raise PromptError(
                    f"{where}: field 'mask' is {self.mask_size[1]}x{self.mask_size[0]} "
                    f"but the video is {width}x{height}"
                )
            covered = rle_pixels(self.mask_rle)
            if covered != height * width:
                raise PromptError(
                    f"{where}: field 'mask' has counts for "
                    f"{'unreadable' if covered is None else covered} pixels, but its size "
                    f"{list(self.mask_size)} has {height * width}; encode the mask at the "
                    "video's size (COCO compressed RLE, column-major)"
                )
            if not self.mask().any():
                raise PromptError(f"{where}: mask is empty")


def validate_prompts(
    prompts: Iterable[Prompt], num_frames: int, width: int, height: int
) -> list[Prompt]:
    """Check every prompt and that no object has two prompts on one frame."""
    seen: set[tuple[int, int]] = set()
    out = []
    for p in prompts:
        p.validate(num_frames, width, height)
        key = (p.obj_id, p.frame)
        if key in seen:
            raise PromptError(
                f"object {p.obj_id} has two prompts on frame {p.frame}; merge them into one "
                "(points and a box may share one prompt)"
            )
        seen.add(key)
        out.append(p)
    return sorted(out, key=lambda p: (p.frame, p.obj_id))


def prompts_from_dicts(items: Sequence[dict]) -> list[Prompt]:
    return [Prompt.from_dict(d) for d in items]


def rle_pixels(counts: str) -> int | None:
    """Pixels covered by the runs of a COCO compressed RLE string (pycocotools'
    ``rleFrString``), or None if it is not one. Decoding trusts the counts, so a
    mask prompt is checked with this before it is decoded.

    >>> m = np.zeros((4, 6), bool); m[1:3, 2:5] = True
    >>> rle_pixels(rle.encode(m).rle), rle_pixels("not an rle!")
    (24, None)
    """
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x = k = 0
        more = True
        while more:
            if p >= len(counts):
                return None
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return None
        runs.append(x)
    return sum(runs)


def _as_int(v: object, name: str) -> int:
    integral = isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer())
    if isinstance(v, bool) or not integral:
        raise PromptError(f"prompt field {name!r} must be an integer, got {v!r}")
    return int(v)
