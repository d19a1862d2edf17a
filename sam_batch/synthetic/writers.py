"""Write synthetic videos as real files: an mp4 and DAVIS-style ground truth.

Both writers take either a rendered :class:`Clip` or a :class:`Scene`; given a
scene they render frame by frame while writing, so an hour-long test video
never exists in memory. The mp4 goes through the same PyAV/FFmpeg path as a
user's video, which is the point: the pipeline under test decodes it like any
other input.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from sam_batch.synthetic.render import Clip, Frame, iter_frames
from sam_batch.synthetic.scene import Scene


@dataclass(frozen=True)
class VideoFile:
    """What :func:`write_mp4` wrote."""

    path: Path
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str


def frames_of(source: Clip | Scene) -> Iterator[Frame]:
    """The frames of a clip (from memory) or a scene (rendered one at a time)."""
    if isinstance(source, Scene):
        yield from iter_frames(source)
        return
    for t in range(len(source)):
        yield Frame(t, source.frames[t], source.labels(t))


def pick_codec() -> str:
    """H.264 (``libx264``) where this FFmpeg build has it, else MPEG-4 Part 2."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_mp4(
    source: Clip | Scene,
    path: str | os.PathLike[str],
    *,
    crf: int = 16,
    preset: str = "fast",
    gop_size: int | None = None,
    codec: str | None = None,
) -> VideoFile:
    """Encode ``source`` to an mp4 (yuv420p) at the scene's fps.

    ``crf`` (H.264 only) trades size for fidelity; 16 keeps the mean error
    around one grey level. ``gop_size`` sets the keyframe interval, which is
    what decides how far a chunked reader must seek back. Width and height
    must be even (a yuv420p constraint).

    >>> import tempfile
    >>> from sam_batch.synthetic.render import generate
    >>> clip = generate(0, width=64, height=48, num_frames=5)
    >>> out = write_mp4(clip, tempfile.mkdtemp() + "/clip.mp4")
    >>> out.num_frames, out.fps, (out.width, out.height)
    (5, 24.0, (64, 48))
    """
    config = source.scene.config if isinstance(source, Clip) else source.config
    if config.width % 2 or config.height % 2:
        raise ValueError(
            f"{path}: yuv420p needs even width and height, got "
            f"{config.width}x{config.height}; generate with even sizes"
        )
    codec = codec or pick_codec()
    rate = Fraction(config.fps).limit_denominator(100_000)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = config.width, config.height, "yuv420p"
        stream.codec_context.time_base = 1 / rate
        if gop_size is not None:
            stream.codec_context.gop_size = gop_size
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": preset}
        else:  # no CRF: ask for about one bit per pixel, which is near-lossless here
            stream.bit_rate = int(config.width * config.height * float(rate))
        for frame in frames_of(source):
            video_frame = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
            video_frame.pts = frame.index
            video_frame.time_base = 1 / rate
            container.mux(stream.encode(video_frame))
            count += 1
        container.mux(stream.encode(None))
    return VideoFile(path, float(rate), count, config.width, config.height, codec)


def davis_palette() -> list[int]:
    """The 256-colour DAVIS / PASCAL VOC palette, flat ``[r0, g0, b0, r1, ...]``.

    >>> davis_palette()[3:9]
    [128, 0, 0, 0, 128, 0]
    """
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def write_davis_png(source: Clip | Scene, folder: str | os.PathLike[str]) -> Path:
    """Write ground truth as indexed PNGs ``00000.png, ...`` (value = object id).

    This is the DAVIS / YouTube-VOS annotation layout: mode ``P``, ``0`` is
    background, the DAVIS palette only colours it for viewing.

    >>> import tempfile
    >>> from sam_batch.synthetic.render import generate
    >>> folder = write_davis_png(generate(0, width=32, height=32, num_frames=2), tempfile.mkdtemp())
    >>> sorted(p.name for p in folder.iterdir())
    ['00000.png', '00001.png']
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    palette = davis_palette()
    for frame in frames_of(source):
        image = Image.fromarray(np.ascontiguousarray(frame.labels))
        image.putpalette(palette)
        image.save(folder / f"{frame.index:05d}.png", optimize=False)
    return folder
