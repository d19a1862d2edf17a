"""A preview video for review: translucent coloured masks with their object ids.

Someone checking a night's run scrubs through these instead of reading
Parquet. Each object is tinted in its DAVIS palette colour (the colour its id
has in the ``davis`` export), outlined, and labelled with its id near the top
of its box; the lower id is drawn on top, as in the PNG exports. The video
keeps the source's frame count, timestamps and audio (``videofile``), so a
frame of the preview is the same frame index as in the dataset.

>>> export("/data/run", "overlay", "/data/previews")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from sam_batch.dataset.reader import Dataset
from sam_batch.export.common import (
    color_of,
    each_video,
    frames_with_masks,
    parse_objects,
    rgb_png,
    selected,
    source_info,
    video_dir,
    video_row,
    write_video,
)
from sam_batch.export.videofile import Encoding, encoding_of
from sam_batch.media.storage import Location
from sam_batch.media.video import VideoInfo


def draw_overlay(
    rgb: np.ndarray,
    masks: dict[int, np.ndarray],
    *,
    alpha: float = 0.5,
    outline: bool = True,
    labels: bool = True,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont | None = None,
) -> np.ndarray:
    """``rgb`` with each mask tinted (``alpha`` of its colour), outlined and labelled.

    >>> rgb = np.zeros((8, 8, 3), np.uint8); m = np.zeros((8, 8), bool); m[2:6, 2:6] = True
    >>> out = draw_overlay(rgb, {1: m}, labels=False)
    >>> out[0, 0].tolist(), out[4, 4].tolist()   # untouched outside; tinted towards (128, 0, 0)
    ([0, 0, 0], [64, 0, 0])
    """
    out = rgb.astype(np.float32)
    order = sorted(masks, reverse=True)  # low ids last, on top
    for obj_id in order:
        m = masks[obj_id]
        out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color_of(obj_id), np.float32)
        if outline:
            edge = m & ~ndimage.binary_erosion(m, border_value=1)
            out[edge] = color_of(obj_id)
    result = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if not labels or not masks:
        return result
    image = Image.fromarray(result)
    draw = ImageDraw.Draw(image)
    font = font or ImageFont.load_default(size=max(10, rgb.shape[0] // 24))
    for obj_id in order:
        ys, xs = np.nonzero(masks[obj_id])
        text = str(obj_id)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = int(np.clip(xs.min(), 0, max(0, rgb.shape[1] - (right - left))))
        y = int(np.clip(ys.min() - (bottom - top) - 2, 0, max(0, rgb.shape[0] - bottom)))
        draw.text(
            (x, y),
            text,
            fill=(255, 255, 255),
            font=font,
            stroke_width=1,
            stroke_fill=color_of(obj_id),
        )
    return np.asarray(image)


def export_overlay(
    ds: Dataset,
    videos: list[str],
    out_url: str,
    storage_options: dict | None = None,
    *,
    objects: Iterable[int] | None = None,
    alpha: float = 0.5,
    outline: bool = True,
    labels: bool = True,
    encoding: str | Encoding = "h264",
    audio: bool = True,
    stills: Iterable[int] = (),
) -> list[str]:
    """``<out>/<video>.mp4`` per video; returns their URLs.

    ``objects`` limits which ids are drawn (default all); ``alpha`` is the tint
    strength; ``audio`` copies the source's audio streams unchanged; ``stills``
    also writes those frames as ``<video>-frame00012.png`` (for reports and docs).
    """
    stills = {int(t) for t in ([stills] if isinstance(stills, int) else stills)}
    loc, chosen, enc = (
        Location(out_url, storage_options),
        parse_objects(objects),
        encoding_of(encoding),
    )

    def one(video_id: str) -> list[str]:
        row = video_row(ds, video_id)
        info = source_info(row, storage_options)
        font = ImageFont.load_default(size=max(10, info.height // 24))
        stills_written: list[str] = []
        pictures = _overlaid(ds, video_id, row, info, storage_options, chosen,
                             dict(alpha=alpha, outline=outline, labels=labels, font=font),
                             loc, stills, stills_written)
        url = write_video(loc, video_id, row, info, enc, pictures, audio=audio,
                          storage_options=storage_options)
        return [*stills_written, url]

    return each_video(videos, one)


def _overlaid(ds: Dataset, video_id: str, row: dict, info: VideoInfo,
              storage_options: dict | None, chosen: frozenset[int] | None, style: dict,
              loc: Location, stills: set[int], stills_written: list[str]
              ) -> Iterator[tuple[int, np.ndarray]]:
    """Each frame with its masks drawn, in order; the ``stills`` frames also as PNGs."""
    for t, rgb, objs in frames_with_masks(ds, video_id, info, row, storage_options):
        drawn = draw_overlay(rgb, {k: m.mask() for k, m in selected(objs, chosen).items()},
                             **style)
        if t in stills:
            still = f"{video_dir(video_id)}-frame{t:05d}.png"
            loc.write(still, rgb_png(drawn))
            stills_written.append(loc.url_of(still))
        yield t, drawn
