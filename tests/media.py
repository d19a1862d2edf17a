"""Small real test videos whose every frame says which frame it is.

Each frame carries its index in binary as a row of large black/white blocks along
the top edge (most significant bit on the left) and a gray level derived from the
index below it. Both survive lossy compression at any quality we encode with, so
``decode_pattern`` can tell the index of a decoded frame and notice when a frame is
garbled, upside down or mirrored: that is how tests check frame-exact decoding
without trusting the decoder they test.

>>> decode_pattern(pattern_frame(41, 64, 48))
41
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: Bits of the index drawn as blocks: enough for 1023 frames.
BITS = 10
#: Fraction of the frame height taken by the row of bit blocks.
BIT_ROW = 0.5


def gray_level(index: int) -> int:
    """Gray of the lower part of frame ``index``: a second witness of the index."""
    # Kept in [80, 176]: never mistaken for a black (<64) or white (>192) bit block.
    return 80 + (index * 37) % 97


def pattern_frame(index: int, width: int, height: int) -> np.ndarray:
    """``[height, width, 3]`` uint8 RGB frame that encodes ``index``.

    The width must allow blocks at least 4 pixels wide (``width >= 4 * BITS``).
    """
    if not 0 <= index < 2**BITS:
        raise ValueError(f"index {index} does not fit in {BITS} bits")
    if width < 4 * BITS:
        raise ValueError(f"width {width} too small for {BITS} blocks of 4 pixels or more")
    frame = np.full((height, width, 3), gray_level(index), np.uint8)
    row = int(height * BIT_ROW)
    for bit in range(BITS):
        x0, x1 = _block_span(bit, width)
        on = (index >> (BITS - 1 - bit)) & 1
        frame[:row, x0:x1] = 255 if on else 0
    return frame


def decode_pattern(rgb: np.ndarray) -> int:
    """The index drawn by ``pattern_frame``; ``ValueError`` if the frame is not one.

    Reads block centres only (edges blur under compression) and checks the gray
    level, so a wrong orientation or a broken frame cannot pass as another index.
    """
    height, width = rgb.shape[:2]
    luma = rgb.astype(np.float32).mean(axis=2)
    row = int(height * BIT_ROW)
    y0, y1 = row // 4, row - row // 4
    index = 0
    for bit in range(BITS):
        x0, x1 = _block_span(bit, width)
        pad = (x1 - x0) // 4
        mean = luma[y0:y1, x0 + pad : x1 - pad].mean()
        if 64 < mean < 192:
            raise ValueError(f"bit block {bit} is neither black nor white (mean {mean:.0f})")
        index = (index << 1) | int(mean >= 192)
    gray = luma[row + (height - row) // 4 : height - (height - row) // 4].mean()
    if abs(gray - gray_level(index)) > 12:
        raise ValueError(f"gray {gray:.0f} does not match index {index} ({gray_level(index)})")
    return index


def _block_span(bit: int, width: int) -> tuple[int, int]:
    return bit * width // BITS, (bit + 1) * width // BITS


def write_video(
    path: str | Path,
    num_frames: int,
    *,
    codec: str = "libx264",
    width: int = 64,
    height: int = 48,
    fps: int = 25,
    gop: int = 12,
    bframes: int = 0,
    open_gop: bool = False,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """Encode frames ``0 .. num_frames-1`` of the pattern into ``path``; returns it.

    The container is chosen by the suffix (``.mp4``, ``.mkv``, ``.webm``, ...).
    ``pts`` (in ``time_base``, default ``1/fps``) gives each frame its own
    presentation time, which makes a variable-frame-rate file. ``rotation`` stores
    the picture turned so that a player applying the display matrix (``rotation``
    degrees counter-clockwise, as ``VideoFrame.rotation`` reports it) shows the
    upright pattern of ``width`` x ``height``. ``open_gop`` lets B-frames shown
    before a keyframe reference the previous GOP (x264 ``open-gop``). ``faststart``
    puts an mp4's index first, so cutting the file's tail leaves an index that
    promises lost frames.
    """
    path = Path(path)
    if pts is not None and len(pts) != num_frames:
        raise ValueError(f"{len(pts)} pts for {num_frames} frames")
    turns = (rotation // 90) % 4
    stored_w, stored_h = (height, width) if turns % 2 else (width, height)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = stored_w, stored_h, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.time_base = time_base or Fraction(1, fps)
        stream.time_base = time_base or Fraction(1, fps)
        stream.options = _codec_options(codec, gop, bframes, open_gop)
        if rotation:
            stream.set_display_rotation(rotation)
        for index in range(num_frames):
            # The stored picture is the displayed one turned back clockwise.
            image = np.ascontiguousarray(np.rot90(pattern_frame(index, width, height), -turns))
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index if pts is None else pts[index]
            frame.time_base = stream.codec_context.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _codec_options(codec: str, gop: int, bframes: int, open_gop: bool) -> dict[str, str]:
    if codec == "libx264":
        # Fixed GOP without scene-cut keyframes so tests know where keyframes are;
        # bframes > 0 reorders packets (decode order != presentation order).
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:b-adapt=0"
        params += ":open-gop=1" if open_gop else ""
        return {
            "crf": "12",
            "preset": "ultrafast" if not bframes else "fast",
            "x264-params": params,
        }
    if codec.startswith("libvpx"):
        return {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"}
    return {}


def drop_first_gop(src: str | Path, dst: str | Path) -> Path:
    """Stream-copy ``src`` from its second keyframe on, as ``ffmpeg -ss ... -c copy`` cuts.

    With open GOPs the B-frames that follow the new first keyframe in decode order
    but are shown before it lose the frames they reference: decoders drop them.
    """
    dst = Path(dst)
    with av.open(str(src)) as source, av.open(str(dst), "w") as target:
        stream = source.streams.video[0]
        out = target.add_stream_from_template(stream)
        keyframes_seen = 0
        for packet in source.demux(stream):
            if packet.pts is None:
                continue
            keyframes_seen += packet.is_keyframe
            if keyframes_seen >= 2:
                packet.stream = out
                target.mux(packet)
    return dst


def packets_out_of_order(path: str | Path) -> bool:
    """Whether packets come in another order than their presentation times (B-frames)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.pts is not None]
    return pts != sorted(pts)


def write_audio_only(path: str | Path) -> Path:
    """A Matroska file with one short silent audio stream and no video stream."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        _mux_silence(container)
    return path


def write_video_without_frames(path: str | Path) -> Path:
    """A Matroska file with a video track that holds no frames (and a little audio).

    Matroska keeps an empty track in its header; mp4 would drop it.
    """
    path = Path(path)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        _mux_silence(container)
    return path


def _mux_silence(container: av.container.OutputContainer) -> None:
    audio = container.add_stream("pcm_s16le", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
    frame.sample_rate, frame.pts = 8000, 0
    container.mux(audio.encode(frame))
    container.mux(audio.encode(None))
