"""What a video is, frame by frame: ``probe`` indexes it into a ``VideoInfo``.

A frame index is the 0-based position of a frame in presentation order, and
everything downstream (chunks, prompts, masks) is keyed by it, so it must mean the
same frame on every machine and for every range. Frame rates and containers'
frame counts cannot give that: variable frame rate breaks ``t * fps``, Matroska
reports 0 frames, and B-frames make decode order differ from display order. So
``probe`` demuxes every packet of the first video stream once (decoding only the
first frame) and keeps the sorted presentation timestamps; frame ``i`` is the
frame whose pts is ``pts[i]``, which is how ``media.decode`` reads any range.

>>> info = probe("clip.mp4")                                  # doctest: +SKIP
>>> info.num_frames, info.time_s(24)                          # doctest: +SKIP
(1800, 1.0)
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from sam_batch.errors import VideoError
from sam_batch.media.container import REENCODE, open_video


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
        check_index(self, frame_idx, "frame_idx")
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
    with open_video(url, storage_options) as (container, stream):
        demuxed = _demux(url, container, stream)
    first = _whole(url, demuxed)
    pts, key_pts = _shown(url, demuxed.pts, demuxed.key_pts, first)
    # ``VideoFrame.rotation`` (PyAV >= 15) reads the display matrix FFmpeg puts on frames.
    rotation = _normalise_rotation(getattr(first, "rotation", 0))
    width, height = (first.height, first.width) if rotation % 180 else (first.width, first.height)
    time_base = demuxed.time_base
    if demuxed.avg_rate:
        fps = float(demuxed.avg_rate)
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
        codec=demuxed.codec,
    )


@dataclass
class _Demuxed:
    """One demux pass over the first video stream, before any check."""

    pts: list[int]
    key_pts: list[int]
    first: av.VideoFrame | None  # the first frame the decoder gave
    cut_short: bool  # the last packet's data ran out
    packets: int  # packets read, the flush packet aside
    indexed: int  # packets the container's index lists (mp4's moov)
    codec: str
    time_base: Fraction
    avg_rate: Fraction | None


def _demux(url: str, container: av.container.InputContainer,
           stream: av.video.stream.VideoStream) -> _Demuxed:
    """Every packet's pts, keyframes among them, and the first decoded frame."""
    pts: list[int] = []
    key_pts: list[int] = []
    first: av.VideoFrame | None = None
    cut_short = False
    packets = 0
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
        raise VideoError(url, f"cannot be read ({e}); it is damaged; {REENCODE}", "frames") from e
    # ``index_entries``: PyAV >= 17.
    return _Demuxed(pts, key_pts, first, cut_short, packets,
                    len(getattr(stream, "index_entries", ())), stream.codec_context.name,
                    Fraction(stream.time_base), stream.average_rate)


def _whole(url: str, d: _Demuxed) -> av.VideoFrame:
    """The first frame, once the pass shows a whole video with frames; else a ``VideoError``."""
    # An index (mp4's moov) that lists more packets than the file holds: the
    # file was cut, possibly right between two packets (so none is flagged).
    if d.packets < d.indexed:
        raise VideoError(
            url,
            f"is truncated: its index lists {d.indexed} frames but the data ends after "
            f"{d.packets}; {REENCODE}",
            "frames",
        )
    if d.cut_short:
        raise VideoError(
            url, f"is truncated: the data of frame {len(d.pts) - 1} is cut off; {REENCODE}",
            "frames",
        )
    if not d.pts:
        raise VideoError(url, "has a video stream but no frames", "frames")
    if d.first is None:
        raise VideoError(url, f"no frame could be decoded (codec {d.codec}); {REENCODE}", "frames")
    return d.first


def _shown(url: str, pts: list[int], key_pts: list[int],
           first: av.VideoFrame) -> tuple[list[int], list[int]]:
    """The pts of the frames a player shows, in order, and of their keyframes."""
    pts = sorted(pts)
    if first.pts is not None and first.pts in pts:
        # Packets shown before the first decodable frame are B-frames of an open GOP
        # whose references were cut away: the decoder drops them, so they are not
        # frames of this video (and counting them would shift every index).
        pts = pts[bisect.bisect_left(pts, first.pts) :]
        key_pts = [p for p in key_pts if p >= first.pts]
    if len(set(pts)) != len(pts):
        raise VideoError(
            url,
            f"has frames with equal timestamps, so frame indices would be ambiguous; {REENCODE}",
            "frames",
        )
    return pts, key_pts


def check_int(info: VideoInfo, value: int, field: str) -> int:
    """``value`` as an int, or a ``VideoError`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise VideoError(info.url, f"{field} must be an integer frame index, got {value!r}", field)
    return int(value)


def check_index(info: VideoInfo, value: int, field: str) -> int:
    """``value`` as an int in ``[0, num_frames)``, or a ``VideoError`` naming ``field``."""
    value = check_int(info, value, field)
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
