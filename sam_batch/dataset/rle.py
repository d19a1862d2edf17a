"""Binary masks <-> COCO compressed RLE, the mask encoding of the dataset.

pycocotools works on Fortran-ordered (column-major) uint8 arrays; getting the
order wrong silently transposes every mask, so all conversions go through this
module. Reordering a 1080p mask costs twice its encoding, so the tracker hands
masks over already column-major (transposed on the model's device) and ``encode``
then reads them in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils


@dataclass(frozen=True)
class EncodedMask:
    """One mask as the dataset stores it."""

    rle: str
    height: int
    width: int
    bbox: tuple[float, float, float, float]  # x, y, w, h
    area: int


def encode(mask: np.ndarray) -> EncodedMask:
    """Encode a boolean ``[H, W]`` mask.

    >>> m = np.zeros((4, 5), bool); m[1:3, 2:4] = True
    >>> e = encode(m); (e.area, e.bbox)
    (4, (2.0, 1.0, 2.0, 2.0))
    >>> bool((decode(e.rle, 4, 5) == m).all())
    True
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    height, width = mask.shape
    if mask.dtype == np.bool_ and mask.flags.f_contiguous:
        fortran = mask.view(np.uint8)  # as the tracker hands masks over: no copy
    else:
        fortran = np.asfortranarray(mask, dtype=np.uint8)
    rle = mask_utils.encode(fortran)
    x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
    return EncodedMask(
        rle=rle["counts"].decode("ascii"),
        height=height,
        width=width,
        bbox=(x, y, w, h),
        area=int(mask_utils.area(rle)),
    )


def to_coco(rle: str, height: int, width: int) -> dict:
    """The pycocotools RLE object for a stored ``rle`` string."""
    return {"size": [int(height), int(width)], "counts": rle.encode("ascii")}


def decode(rle: str, height: int, width: int) -> np.ndarray:
    """Decode a stored ``rle`` string back to a boolean ``[H, W]`` mask."""
    return mask_utils.decode(to_coco(rle, height, width)).astype(bool)
