"""Redact objects in a video: blur or pixelate them on every frame, change nothing else.

A redacted video replaces the original where the original may not go (faces,
plates, patients), so two promises matter more than looks: every pixel of a
chosen object is covered on every frame the dataset has its mask, and no
pixel outside the masks changes (beyond what the encoder does; with
``encoding="lossless"`` not at all). The source's frame count, timestamps and
audio packets are kept (``videofile``), so the redacted file can stand in for
the original in an edit.

Only a box around the masks is filtered, which keeps the cost per frame
proportional to the redacted area. Pixelation blocks are aligned to a grid
fixed on the frame, not on the object, so they do not shimmer as it moves.
``grow`` widens every mask by that many pixels first, a safety margin against
masks that hug the object too tightly.

>>> export("/data/run", "redact", "/data/out", objects=[2, 5], method="pixelate")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from sam_batch.dataset.reader import Dataset
from sam_batch.errors import SamBatchError
from sam_batch.export.common import (
    each_video,
    frames_with_masks,
    parse_objects,
    selected,
    source_info,
    union_mask,
    video_row,
    write_video,
)
from sam_batch.export.videofile import Encoding, encoding_of
from sam_batch.media.storage import Location
from sam_batch.media.video import VideoInfo

Method = Literal["blur", "pixelate"]


def default_strength(method: Method, height: int, width: int) -> int:
    """Blur radius (Gaussian sigma) or block side that hides detail at this frame size.

    >>> default_strength("blur", 1080, 1920), default_strength("pixelate", 1080, 1920)
    (54, 33)
    """
    short = min(height, width)
    return max(3, short // 20) if method == "blur" else max(4, short // 32)


def redact_frame(rgb: np.ndarray, mask: np.ndarray, method: Method, strength: int) -> np.ndarray:
    """``rgb`` with the pixels in ``mask`` blurred or pixelated, the rest untouched.

    >>> rgb = np.zeros((8, 8, 3), np.uint8); rgb[::2] = 255
    >>> m = np.zeros((8, 8), bool); m[:4, :4] = True
    >>> out = redact_frame(rgb, m, "pixelate", 4)
    >>> np.unique(out[:4, :4]).tolist(), bool((out[:, 4:] == rgb[:, 4:]).all())
    ([128], True)
    """
    if not mask.any():
        return rgb
    height, width = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if method == "blur":
        pad = 3 * strength  # the Gaussian's reach: a crop this much larger blurs like the frame
        y0, y1 = max(0, rows[0] - pad), min(height, rows[-1] + 1 + pad)
        x0, x1 = max(0, cols[0] - pad), min(width, cols[-1] + 1 + pad)
        crop = Image.fromarray(rgb[y0:y1, x0:x1])
        filtered = np.asarray(crop.filter(ImageFilter.GaussianBlur(strength)))
    elif method == "pixelate":
        b = strength  # blocks on a grid anchored at the frame's origin
        y0, x0 = rows[0] // b * b, cols[0] // b * b
        y1, x1 = min(height, (rows[-1] // b + 1) * b), min(width, (cols[-1] // b + 1) * b)
        crop = Image.fromarray(rgb[y0:y1, x0:x1])
        small = crop.resize(
            (-(-(x1 - x0) // b), -(-(y1 - y0) // b)), Image.Resampling.BOX, reducing_gap=None
        )
        big = small.resize((small.width * b, small.height * b), Image.Resampling.NEAREST)
        filtered = np.asarray(big)[: y1 - y0, : x1 - x0]
    else:
        raise SamBatchError(f"redact method must be 'blur' or 'pixelate', got {method!r}")
    out = rgb.copy()
    region = mask[y0:y1, x0:x1]
    out[y0:y1, x0:x1][region] = filtered[region]
    return out


def export_redact(
    ds: Dataset,
    videos: list[str],
    out_url: str,
    storage_options: dict | None = None,
    *,
    objects: Iterable[int] | None = None,
    method: Method = "blur",
    strength: int | None = None,
    grow: int = 0,
    encoding: str | Encoding = "h264",
    audio: bool = True,
) -> list[str]:
    """``<out>/<video><suffix>`` per video with the chosen objects redacted; returns URLs.

    ``objects`` picks ids (default all); ``strength`` is the blur sigma or the
    pixel block side in pixels (default scales with the frame,
    :func:`default_strength`); ``grow`` dilates the masks first; ``audio``
    copies the source's audio streams unchanged.
    """
    if method not in ("blur", "pixelate"):
        raise SamBatchError(f"redact method must be 'blur' or 'pixelate', got {method!r}")
    if strength is not None and strength < 1:
        raise SamBatchError(f"redact strength must be a positive number of pixels, got {strength}")
    if grow < 0:
        raise SamBatchError(f"redact grow must be >= 0 pixels, got {grow}")
    loc, chosen, enc = (
        Location(out_url, storage_options),
        parse_objects(objects),
        encoding_of(encoding),
    )
    footprint = ndimage.generate_binary_structure(2, 2)

    def one(video_id: str) -> list[str]:
        row = video_row(ds, video_id)
        info = source_info(row, storage_options)
        power = strength or default_strength(method, info.height, info.width)
        pictures = _redacted(ds, video_id, row, info, storage_options, chosen, grow, footprint,
                             method, power)
        return [write_video(loc, video_id, row, info, enc, pictures, audio=audio,
                            storage_options=storage_options)]

    return each_video(videos, one)


def _redacted(ds: Dataset, video_id: str, row: dict, info: VideoInfo,
              storage_options: dict | None, chosen: frozenset[int] | None, grow: int,
              footprint: np.ndarray, method: str, power: float
              ) -> Iterator[tuple[int, np.ndarray]]:
    """Each frame with the chosen (grown) masks blurred or pixelated, in order."""
    for t, rgb, objs in frames_with_masks(ds, video_id, info, row, storage_options):
        mask = union_mask(selected(objs, chosen), info.height, info.width)
        if grow and mask.any():
            mask = ndimage.binary_dilation(mask, footprint, iterations=grow)
        yield t, redact_frame(rgb, mask, method, power)
