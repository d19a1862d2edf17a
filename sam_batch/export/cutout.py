"""Cut objects out of their video: onto a background, or as an alpha matte.

Two uses. A composite puts the chosen objects on a plain colour or an image
(green-screen plates, training data with swapped backgrounds). A matte keeps
the source pixels and adds an alpha channel that is exactly the union of the
chosen masks (255 inside, 0 outside), for compositing tools; the colour is
straight (not premultiplied), so pixels outside the matte keep their colour.

Outputs, per video:

- ``output="video"``: ``<out>/<video><suffix>``; a composite defaults to
  H.264 mp4, a matte to PNG-in-QuickTime (``png-mov``, RGBA, lossless); any
  :data:`~sam_batch.export.videofile.ENCODINGS` entry with alpha
  (``qtrle``, ``vp9-alpha``) works for a matte. Frame count and timestamps are
  the source's.
- ``output="png"``: ``<out>/<video>/00000.png``: RGB composites or RGBA mattes.

>>> export("/data/run", "cutout", "/data/plates", objects=[1], background="green")  # doctest: +SKIP
>>> export("/data/run", "cutout", "/data/mattes", alpha=True, output="png")  # doctest: +SKIP
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Literal

import fsspec
import numpy as np
from PIL import Image, ImageColor, ImageOps

from sam_batch.dataset.reader import Dataset
from sam_batch.errors import SamBatchError
from sam_batch.export.common import (
    each_video,
    frames_with_masks,
    parse_objects,
    rgb_png,
    selected,
    source_info,
    union_mask,
    video_dir,
    video_row,
    write_video,
)
from sam_batch.export.videofile import Encoding, encoding_of
from sam_batch.media.storage import Location
from sam_batch.media.video import VideoInfo

Color = str | tuple[int, int, int]


def parse_color(color: Color) -> tuple[int, int, int]:
    """An RGB triple from ``(r, g, b)``, ``"#rrggbb"`` or a CSS colour name.

    >>> parse_color("#00ff00"), parse_color("white"), parse_color((1, 2, 3))
    ((0, 255, 0), (255, 255, 255), (1, 2, 3))
    """
    try:
        rgb = ImageColor.getrgb(color) if isinstance(color, str) else tuple(color)
    except (ValueError, TypeError) as e:
        raise SamBatchError(
            f"background {color!r} is not a colour; give (r, g, b), '#rrggbb' or a CSS name"
        ) from e
    if len(rgb) < 3 or not all(0 <= int(c) <= 255 for c in rgb[:3]):
        raise SamBatchError(f"background {color!r} must be three values in 0..255")
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def load_background(url: str, width: int, height: int, storage_options: dict | None) -> np.ndarray:
    """An image from any fsspec URL, scaled and centre-cropped to cover the frame."""
    try:
        with fsspec.open(url, "rb", **(storage_options or {})) as f:
            image = Image.open(io.BytesIO(f.read())).convert("RGB")
    except (OSError, ValueError) as e:
        raise SamBatchError(f"background image {url} cannot be read ({e})") from e
    return np.asarray(ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS))


def composite(rgb: np.ndarray, mask: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Source pixels where ``mask``, ``background`` (a colour or an image) elsewhere.

    >>> rgb = np.full((1, 2, 3), 9, np.uint8)
    >>> composite(rgb, np.array([[True, False]]), np.array([0, 255, 0], np.uint8)).tolist()
    [[[9, 9, 9], [0, 255, 0]]]
    """
    return np.where(mask[..., None], rgb, np.broadcast_to(background, rgb.shape)).astype(np.uint8)


def matte(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGBA: the source colour, alpha 255 inside ``mask`` and 0 outside."""
    return np.dstack([rgb, np.where(mask, 255, 0).astype(np.uint8)])


def _pictures(
    ds: Dataset,
    video_id: str,
    row: dict,
    info: VideoInfo,
    storage_options: dict | None,
    chosen: frozenset[int] | None,
    alpha: bool,
    background: np.ndarray,
) -> Iterator[tuple[int, np.ndarray]]:
    """Each frame's composite or matte, in order."""
    for t, rgb, objs in frames_with_masks(ds, video_id, info, row, storage_options):
        mask = union_mask(selected(objs, chosen), info.height, info.width)
        yield t, matte(rgb, mask) if alpha else composite(rgb, mask, background)


def export_cutout(
    ds: Dataset,
    videos: list[str],
    out_url: str,
    storage_options: dict | None = None,
    *,
    objects: Iterable[int] | None = None,
    background: Color = (0, 0, 0),
    background_image: str | None = None,
    alpha: bool = False,
    output: Literal["video", "png"] = "video",
    encoding: str | Encoding | None = None,
    audio: bool = False,
) -> list[str]:
    """Composites (or mattes with ``alpha=True``) of the chosen objects; one URL per video.

    ``objects`` picks ids (default all); ``background_image`` (a URL) wins over
    ``background`` (a colour); both are ignored for a matte.
    """
    if output not in ("video", "png"):
        raise SamBatchError(f"cutout output must be 'video' or 'png', got {output!r}")
    loc, chosen = Location(out_url, storage_options), parse_objects(objects)
    enc = None
    if output == "video":
        enc = encoding_of(encoding or ("png-mov" if alpha else "h264"), alpha=alpha)
    color = np.asarray(parse_color(background), np.uint8)

    def one(video_id: str) -> list[str]:
        row = video_row(ds, video_id)
        info = source_info(row, storage_options)
        bg = color
        if background_image is not None and not alpha:
            bg = load_background(background_image, info.width, info.height, storage_options)

        pictures = _pictures(ds, video_id, row, info, storage_options, chosen, alpha, bg)
        if enc is None:
            folder = video_dir(video_id)
            for t, picture in pictures:
                loc.write(f"{folder}/{t:05d}.png", rgb_png(picture))
            return [loc.url_of(folder)]
        return [write_video(loc, video_id, row, info, enc, pictures, audio=audio,
                            storage_options=storage_options)]

    return each_video(videos, one)
