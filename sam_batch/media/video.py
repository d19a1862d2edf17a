"""Frame-exact, streaming decode of one video from any fsspec URL.

A frame index is the 0-based position of a frame in presentation order, and
everything downstream (chunks, prompts, masks) is keyed by it, so it must mean the
same frame on every machine and for every range. Frame rates and containers'
frame counts cannot give that: variable frame rate breaks ``t * fps``, Matroska
reports 0 frames, and B-frames make decode order differ from display order. So
``probe`` demuxes every packet of the first video stream once (decoding only the
first frame) and keeps the sorted presentation timestamps; frame ``i`` is the frame whose pts is
``pts[i]``. ``read_frames`` seeks to the keyframe at or before ``start`` in the
stream's own time base, decodes forward, names each decoded frame by its pts and
stops after ``end - 1``, holding one frame at a time.

>>> info = probe("clip.mp4")                                  # doctest: +SKIP
>>> for idx, rgb in read_frames(info, 100, 164):              # doctest: +SKIP
...     rgb.shape                                             # (info.height, info.width, 3)
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import fsspec
import numpy as np
from av.video.reformatter import VideoReformatter

from sam_batch.errors import VideoError

#: Earlier keyframes tried when a seek lands past ``start`` (MPEG-TS seeks land one
#: keyframe late), before decoding from the very beginning of the file.
SEEK_RETRIES = 3

_REENCODE = "re-encode it or download it again"


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learned about a video: enough to plan chunks and read any range.

    ``pts[i]`` is the presentation timestamp (in ``time_base``) of frame ``i``;
    ``keyframes`` are frame indices where decoding can start. ``width`` and
    ``height`` are those of the frames ``read_frames`` yields, i.e. after
    ``rotation`` (degrees counter-clockwise, as in the file's display matrix) has
    been applied.
    """

    url: str
    num_frames: int
    fps: float  # average rate, for reporting only; never used to compute indices
    width: int
    height: int
    rotation: int
    time_base: Fraction
    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    codec: str

    def time_s(self, frame_idx: int) -> float:
        """Seconds from the first frame to frame ``frame_idx`` (exact under VFR)."""
        _check_index(self, frame_idx, "frame_idx")
        return float((self.pts[frame_idx] - self.pts[0]) * self.time_base)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; ``VideoInfo.from_dict(info.to_dict()) == info``."""
        return {
            "url": self.url,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "rotation": self.rotation,
            "time_base": [self.time_base.numerator, self.time_base.denominator],
            "pts": list(self.pts),
            "keyframes": list(self.keyframes),
            "codec": self.codec,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoInfo:
        """Inverse of ``to_dict``."""
        num, den = d["time_base"]
        return cls(
            url=str(d["url"]),
            num_frames=int(d["num_frames"]),
            fps=float(d["fps"]),
            width=int(d["width"]),
            height=int(d["height"]),
            rotation=int(d["rotation"]),
            time_base=Fraction(int(num), int(den)),
            pts=tuple(int(p) for p in d["pts"]),
            keyframes=tuple(int(k) for k in d["keyframes"]),
            codec=str(d["codec"]),
        )


def probe(url: str, storage_options: dict | None = None) -> VideoInfo:
    """Index every frame of ``url``'s first video stream in one demux pass.

    Only the first frame is decoded, to learn the displayed size and rotation
    (FFmpeg attaches the display matrix to decoded frames). Raises ``VideoError``
    for a missing, unreadable, truncated or frameless video.

    >>> probe("s3://bucket/clip.mkv", {"anon": True}).num_frames  # doctest: +SKIP
    1800
    """
    pts: list[int] = []
    key_pts: list[int] = []
    first: av.VideoFrame | None = None
    cut_short = False
    packets = 0
    with _open_video(url, storage_options) as (container, stream):
        try:
            for packet in container.demux(stream):
                packets += packet.size > 0 or packet.dts is not None  # not the flush packet
                # Flush packets carry no pts; packets an edit list cuts are never shown.
                if packet.pts is None or packet.is_discard:
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
                # Demuxers flag a packet whose bytes ran out; only the last one matters
                # (corrupt packets mid-stream are damage the decoder conceals).
                cut_short = packet.is_corrupt
                if first is None:
                    first = next(iter(packet.decode()), None)
            if first is None and pts:
                first = next(iter(stream.decode(None)), None)
        except (av.error.FFmpegError, OSError) as e:
            raise VideoError(
                url, f"cannot be read ({e}); it is damaged; {_REENCODE}", "frames"
            ) from e
        # An index (mp4's moov) that lists more packets than the file holds: the
        # file was cut, possibly right between two packets (so none is flagged).
        # (``index_entries``: PyAV >= 17.)
        indexed = len(getattr(stream, "index_entries", ()))
        codec = stream.codec_context.name
        time_base = Fraction(stream.time_base)
        avg_rate = stream.average_rate
    if packets < indexed:
        raise VideoError(
            url,
            f"is truncated: its index lists {indexed} frames but the data ends after {packets}; "
            f"{_REENCODE}",
            "frames",
        )
    if cut_short:
        raise VideoError(
            url, f"is truncated: the data of frame {len(pts) - 1} is cut off; {_REENCODE}", "frames"
        )
    if not pts:
        raise VideoError(url, "has a video stream but no frames", "frames")
    if first is None:
        raise VideoError(url, f"no frame could be decoded (codec {codec}); {_REENCODE}", "frames")
    pts.sort()
    if first.pts is not None and first.pts in pts:
        # Packets shown before the first decodable frame are B-frames of an open GOP
        # whose references were cut away: the decoder drops them, so they are not
        # frames of this video (and counting them would shift every index).
        pts = pts[bisect.bisect_left(pts, first.pts) :]
        key_pts = [p for p in key_pts if p >= first.pts]
    if len(set(pts)) != len(pts):
        raise VideoError(
            url,
            f"has frames with equal timestamps, so frame indices would be ambiguous; {_REENCODE}",
            "frames",
        )
    # ``VideoFrame.rotation`` (PyAV >= 15) reads the display matrix FFmpeg puts on frames.
    rotation = _normalise_rotation(getattr(first, "rotation", 0))
    width, height = (first.height, first.width) if rotation % 180 else (first.width, first.height)
    if avg_rate:
        fps = float(avg_rate)
    elif len(pts) > 1:
        fps = float((len(pts) - 1) / ((pts[-1] - pts[0]) * time_base))
    else:
        fps = 0.0
    return VideoInfo(
        url=url,
        num_frames=len(pts),
        fps=fps,
        width=width,
        height=height,
        rotation=rotation,
        time_base=time_base,
        pts=tuple(pts),
        keyframes=tuple(sorted(bisect.bisect_left(pts, p) for p in key_pts)),
        codec=codec,
    )


def read_frames(
    video: str | VideoInfo, start: int, end: int, storage_options: dict | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_idx, rgb)`` for every frame in ``[start, end)``, in order.

    ``rgb`` is a C-contiguous ``[height, width, 3]`` uint8 array, upright as the
    video is displayed. Decoding starts at the keyframe at or before ``start`` and
    stops after ``end - 1``; one frame is held at a time, and the file is closed
    when the iterator ends or is closed early. A URL is probed first (a full demux
    pass): pass the ``VideoInfo`` when reading several ranges. The range is checked
    here, before anything is opened; a frame the file cannot deliver (truncated,
    damaged, changed since probing) raises ``VideoError`` rather than being skipped.

    >>> for idx, rgb in read_frames(info, 100, 164):  # doctest: +SKIP
    ...     masks[idx] = track(rgb)
    """
    info = video if isinstance(video, VideoInfo) else probe(video, storage_options)
    start, end = _check_index(info, start, "start"), _check_int(info, end, "end")
    if not start < end <= info.num_frames:
        raise VideoError(
            info.url,
            f"end {end} must be in ({start}, {info.num_frames}] (start {start}, "
            f"{info.num_frames} frames)",
            "end",
        )
    return _read_range(info, start, end, storage_options)


def read_frame(
    video: str | VideoInfo, frame_idx: int, storage_options: dict | None = None
) -> np.ndarray:
    """One upright RGB frame; for many frames use ``read_frames`` (one seek per call).

    >>> read_frame(info, 0).shape == (info.height, info.width, 3)  # doctest: +SKIP
    True
    """
    info = video if isinstance(video, VideoInfo) else probe(video, storage_options)
    frame_idx = _check_index(info, frame_idx, "frame_idx")
    with contextlib.closing(_read_range(info, frame_idx, frame_idx + 1, storage_options)) as it:
        for _, rgb in it:
            return rgb
    raise AssertionError("unreachable: _read_range yields every frame or raises")


def rotate_upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a stored ``[H, W, C]`` picture ``rotation`` degrees counter-clockwise.

    That is how players apply a display matrix (``VideoFrame.rotation`` in PyAV,
    ``ffplay``'s autorotate): a phone video stored landscape with rotation 270 (the
    ``rotate=90`` tag) comes out portrait. Always returns a C-contiguous array.

    >>> rotate_upright(np.arange(6).reshape(2, 3, 1), 90)[..., 0].tolist()
    [[2, 5], [1, 4], [0, 3]]
    """
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns) if turns else rgb)


class _LandedLate(Exception):
    """A seek ended after ``start``: try an earlier keyframe. Raised before any yield."""


def _read_range(
    info: VideoInfo, start: int, end: int, storage_options: dict | None
) -> Iterator[tuple[int, np.ndarray]]:
    """Seek and decode ``[start, end)``; a seek that lands late falls back to an earlier one."""
    k = bisect.bisect_right(info.keyframes, start) - 1
    earlier = info.keyframes[max(0, k - SEEK_RETRIES) : k + 1] if k >= 0 else ()
    to_rgb = VideoReformatter()  # keeps one scaler context: ~6x faster than frame.to_ndarray
    with _open_video(info.url, storage_options) as (container, stream):
        stream.thread_type = "AUTO"  # frame + slice threads: several times faster on long GOPs
        for keyframe in reversed(earlier):
            try:
                container.seek(info.pts[keyframe], stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError:
                continue
            try:
                yield from _decode_from_here(
                    container, stream, info, start, end, to_rgb, seeked=True
                )
                return
            except _LandedLate:
                continue
    # Every seek landed late: a fresh demuxer is the one sure way back to the first packet.
    with _open_video(info.url, storage_options) as (container, stream):
        stream.thread_type = "AUTO"
        try:
            yield from _decode_from_here(container, stream, info, start, end, to_rgb, seeked=False)
        except _LandedLate:
            raise VideoError(
                info.url,
                f"frame {start} is never delivered by the decoder, even "
                f"decoding from the start of the file; {_REENCODE}",
                "frames",
            ) from None


def _decode_from_here(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    info: VideoInfo,
    start: int,
    end: int,
    to_rgb: VideoReformatter,
    seeked: bool,
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode on from the demuxer's position, yielding frames ``start .. end - 1``.

    Frames before ``start`` are decoded (they are references) but never converted to
    RGB. Raises ``_LandedLate`` before the first yield if the position is past
    ``start``: the first packet after a seek must be a keyframe at or before it.
    """
    expected = start
    landing_checked = not seeked
    try:
        for packet in container.demux(stream):
            if not landing_checked and packet.pts is not None:
                landing_checked = True
                if not packet.is_keyframe or packet.pts > info.pts[start]:
                    raise _LandedLate
            for frame in packet.decode():
                idx = _frame_index(info, frame.pts)
                if idx < start:
                    continue
                if idx != expected:
                    if expected == start:
                        raise _LandedLate
                    raise VideoError(
                        info.url,
                        f"the decoder delivered frame {idx} where frame "
                        f"{expected} was due; {_REENCODE}",
                        "frames",
                    )
                rgb = to_rgb.reformat(frame, format="rgb24").to_ndarray()
                yield idx, rotate_upright(rgb, info.rotation)
                expected += 1
                if expected == end:
                    return
    except av.error.FFmpegError as e:
        raise VideoError(
            info.url,
            f"frame {expected} cannot be decoded ({e}); the file is "
            f"damaged or truncated; {_REENCODE}",
            "frames",
        ) from e
    if not landing_checked:
        raise _LandedLate  # the seek went past the last packet
    raise VideoError(
        info.url,
        f"ends before frame {expected} although it was probed with "
        f"{info.num_frames} frames: it is truncated or changed since; "
        f"{_REENCODE}, then probe it again",
        "frames",
    )


def _frame_index(info: VideoInfo, pts: int | None) -> int:
    """Index of the probed frame with this pts; a pts the probe never saw is an error."""
    if pts is None:
        raise VideoError(
            info.url, f"the decoder returned a frame without a timestamp; {_REENCODE}", "frames"
        )
    i = bisect.bisect_left(info.pts, pts)
    if i == len(info.pts) or info.pts[i] != pts:
        raise VideoError(
            info.url,
            f"decoded a frame (pts {pts}) that probing did not see: the file "
            "changed since it was probed; probe it again",
            "frames",
        )
    return i


@contextlib.contextmanager
def _open_video(
    url: str, storage_options: dict | None
) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open ``url`` through fsspec and yield its container and first video stream.

    Every way this can fail becomes a ``VideoError`` that says what to check.
    """
    try:
        file = fsspec.open(url, "rb", **(storage_options or {})).open()
    except FileNotFoundError:
        raise VideoError(url, "does not exist; check the path or URL", "url") from None
    except (OSError, ValueError, ImportError) as e:
        raise VideoError(
            url,
            f"cannot be opened ({type(e).__name__}: {e}); check the URL and storage_options",
            "url",
        ) from e
    try:
        try:
            container = av.open(file, "r", metadata_errors="replace")
        except (av.error.FFmpegError, OSError, ValueError, EOFError) as e:
            raise VideoError(
                url,
                f"is not a readable media file ({e}); it may be damaged, "
                f"truncated or not a video; {_REENCODE}",
                "format",
            ) from e
        try:
            if not container.streams:
                raise VideoError(
                    url,
                    "is not a readable media file: no streams found (not a video, or an mp4 cut "
                    f"short before its index was written); {_REENCODE}",
                    "format",
                )
            if not container.streams.video:
                found = ", ".join(s.type for s in container.streams)
                raise VideoError(
                    url,
                    f"has no video stream (found: {found}); pass a video file. If it is one, it "
                    f"is damaged or truncated (an mp4 cut before its index); {_REENCODE}",
                    "video stream",
                )
            yield container, container.streams.video[0]
        finally:
            container.close()
    finally:
        file.close()


def _check_int(info: VideoInfo, value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise VideoError(info.url, f"{field} must be an integer frame index, got {value!r}", field)
    return int(value)


def _check_index(info: VideoInfo, value: int, field: str) -> int:
    """``value`` as an int in ``[0, num_frames)``, or a ``VideoError`` naming ``field``."""
    value = _check_int(info, value, field)
    if not 0 <= value < info.num_frames:
        raise VideoError(
            info.url,
            f"{field} {value} is outside the video's frames [0, {info.num_frames - 1}]",
            field,
        )
    return value


def _normalise_rotation(degrees: float) -> int:
    """Display-matrix angle (any sign, any value) as 0, 90, 180 or 270."""
    return round(degrees / 90.0) * 90 % 360
