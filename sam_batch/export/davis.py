"""PNG mask exports: DAVIS palette frames and SA-V per-object frames.

Two layouts that VOS tools read, one file per frame for every frame of the
video (tools index annotations by frame file name and expect none missing):

- ``davis``: ``<out>/<video>/00000.png``, one indexed (mode ``P``) PNG per
  frame with the DAVIS palette; the pixel value is the object id, ``0`` the
  background. A PNG pixel holds one id, so where masks overlap the lower id
  wins (SAM 2's ``tools/vos_inference.py`` merges per-object masks the same
  way) and ids above 255 cannot be written: that is an error, not a wrap.
- ``per-object`` (SA-V layout): ``<out>/<video>/<obj_id:03d>/00000.png``,
  one indexed PNG per object per frame, pixel value ``1`` inside the mask and
  ``0`` outside, DAVIS palette; this is exactly what SAM 2's
  ``vos_inference.py --per_obj_png_file`` writes and reads back (``> 0``), so
  overlaps are kept. An object's folder has a PNG for every frame of the
  video, all-zero where the object is absent.

``<video>`` is the video id as one path component (``storage.safe_name``).

>>> export("/data/run", "davis", "/data/davis")   # doctest: +SKIP
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
from PIL import Image

from sam_batch.dataset.reader import Dataset, MaskRow
from sam_batch.errors import SamBatchError
from sam_batch.export.common import (
    PALETTE,
    every_frame,
    parse_objects,
    video_dir,
    video_row,
)
from sam_batch.media.storage import Location

#: Largest object id an 8-bit palette PNG can hold (0 is the background).
MAX_PALETTE_ID = 255


def label_map(masks: dict[int, np.ndarray], height: int, width: int) -> np.ndarray:
    """``[H, W] uint8`` label map of per-object masks; the lower id wins an overlap.

    >>> a = np.zeros((1, 3), bool); a[0, :2] = True
    >>> b = np.zeros((1, 3), bool); b[0, 1:] = True
    >>> label_map({2: a, 1: b}, 1, 3).tolist()
    [[2, 1, 1]]
    """
    out = np.zeros((height, width), np.uint8)
    for obj_id in sorted(masks, reverse=True):  # paint high ids first, low ids over them
        if not 0 < obj_id <= MAX_PALETTE_ID:
            raise SamBatchError(_too_big(obj_id))
        out[masks[obj_id]] = obj_id
    return out


def png_bytes(values: np.ndarray) -> bytes:
    """An indexed PNG of ``values`` (uint8) with the DAVIS palette."""
    image = Image.fromarray(values, mode="P")
    image.putpalette(PALETTE)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _too_big(obj_id: int, video_id: str | None = None) -> str:
    where = f"video {video_id!r}: " if video_id else ""
    return (
        f"{where}object id {obj_id} does not fit a DAVIS palette PNG, whose pixels hold ids "
        f"1..{MAX_PALETTE_ID}; export 'per-object' or 'ytvis' instead, which keep any id"
    )


def _masks(objects: dict[int, MaskRow], chosen: frozenset[int] | None) -> dict[int, np.ndarray]:
    return {
        k: m.mask() for k, m in objects.items() if m.area > 0 and (chosen is None or k in chosen)
    }


def export_davis(
    ds: Dataset,
    videos: list[str],
    out_url: str,
    storage_options: dict | None = None,
    *,
    objects: Iterable[int] | None = None,
) -> list[str]:
    """DAVIS palette PNGs; returns one folder URL per video.

    ``objects`` limits the export to some ids (default all).
    """
    loc, chosen = Location(out_url, storage_options), parse_objects(objects)
    for video_id in videos:  # ids known from tracks fail before anything is written
        too_big = [
            k
            for k in ds.tracks(video_id).column("obj_id").to_pylist()
            if k > MAX_PALETTE_ID and (chosen is None or k in chosen)
        ]
        if too_big:
            raise SamBatchError(_too_big(max(too_big), video_id))
    written = []
    for video_id in videos:
        row = video_row(ds, video_id)
        folder = video_dir(video_id)
        height, width = int(row["height"]), int(row["width"])
        empty = png_bytes(np.zeros((height, width), np.uint8))
        for t, objs in every_frame(ds, video_id, row):
            masks = _masks(objs, chosen)
            big = [k for k in masks if k > MAX_PALETTE_ID]
            if big:
                raise SamBatchError(_too_big(max(big), video_id))
            data = png_bytes(label_map(masks, height, width)) if masks else empty
            loc.write(f"{folder}/{t:05d}.png", data)
        written.append(loc.url_of(folder))
    return written


def export_per_object(
    ds: Dataset,
    videos: list[str],
    out_url: str,
    storage_options: dict | None = None,
    *,
    objects: Iterable[int] | None = None,
) -> list[str]:
    """SA-V per-object PNGs (values 0/1, palette); returns one folder URL per video.

    An object gets a folder once it has a row; the frames before are written
    then as all-zero PNGs, so every object folder has every frame.
    """
    loc, chosen = Location(out_url, storage_options), parse_objects(objects)
    written = []
    for video_id in videos:
        row = video_row(ds, video_id)
        folder = video_dir(video_id)
        height, width = int(row["height"]), int(row["width"])
        empty = png_bytes(np.zeros((height, width), np.uint8))
        seen: set[int] = set()
        last = -1
        for t, objs in every_frame(ds, video_id, row):
            for k in sorted(objs):
                if chosen is not None and k not in chosen:
                    continue
                if k not in seen:
                    seen.add(k)
                    for earlier in range(t):
                        loc.write(f"{folder}/{k:03d}/{earlier:05d}.png", empty)
            for k in sorted(seen):
                m = objs.get(k)
                data = empty if m is None or m.area == 0 else png_bytes(m.mask().astype(np.uint8))
                loc.write(f"{folder}/{k:03d}/{t:05d}.png", data)
            last = t
        assert last == int(row["frames"]) - 1
        written.append(loc.url_of(folder))
    return written
