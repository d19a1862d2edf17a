"""Write an export video that keeps the source's frames, timing and (optionally) audio.

A redacted or annotated video replaces the source downstream, so it must line
up with it: the same number of frames, each shown at the source frame's time
(the source's pts and time base are reused, so variable frame rate survives),
and the source's audio packets copied unchanged, interleaved by time. The
video is encoded into a local file and published once complete
(``common.local_file``), because encoders and muxers want a seekable file and
an object store wants one upload.

How to encode is data: an :class:`Encoding` (codec, pixel format, codec
options, file suffix), picked by name from :data:`ENCODINGS` or given whole.

>>> ENCODINGS["lossless"].codec, ENCODINGS["lossless"].suffix
('libx264rgb', '.mp4')
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import fsspec
import numpy as np

from sam_batch.errors import SamBatchError
from sam_batch.media.video import VideoInfo

log = logging.getLogger("sam_batch")

@dataclass(frozen=True)
class Encoding:
    """How an export video is encoded.

    ``pix_fmt`` with an alpha channel (``rgba``, ``argb``, ``yuva420p``) makes
    the encoder keep the frames' alpha.

    >>> Encoding("ffv1", "bgr0", suffix=".mkv").has_alpha
    False
    """

    codec: str
    pix_fmt: str
    options: dict[str, str] = field(default_factory=dict, hash=False)
    suffix: str = ".mp4"

    @property
    def has_alpha(self) -> bool:
        return self.pix_fmt in ("rgba", "argb", "bgra", "abgr", "yuva420p", "yuva444p")

    def frame_size(self, width: int, height: int) -> tuple[int, int]:
        """The size this encoding writes ``width`` x ``height`` frames at: the same, or
        rounded up to the chroma subsampling's block (even sizes for 4:2:0).

        >>> ENCODINGS["h264"].frame_size(317, 241), ENCODINGS["ffv1"].frame_size(317, 241)
        ((318, 242), (317, 241))
        """
        fmt = av.VideoFormat(self.pix_fmt)
        step_x = max(1, round(1024 / fmt.chroma_width(1024)))
        step_y = max(1, round(1024 / fmt.chroma_height(1024)))
        return -(-width // step_x) * step_x, -(-height // step_y) * step_y


#: Named encodings. ``h264`` plays everywhere; ``lossless`` keeps RGB bit-exact
#: (libx264rgb at qp 0); ``ffv1`` is lossless and open; ``png-mov`` (PNG in
#: QuickTime, RGBA, lossless) and ``qtrle`` carry alpha into editing tools;
#: ``vp9-alpha`` (VP9 ``yuva420p`` in WebM) carries alpha to web browsers.
ENCODINGS: dict[str, Encoding] = {
    "h264": Encoding("libx264", "yuv420p", {"crf": "18", "preset": "medium"}, ".mp4"),
    "lossless": Encoding("libx264rgb", "rgb24", {"qp": "0", "preset": "veryfast"}, ".mp4"),
    "ffv1": Encoding("ffv1", "bgr0", {}, ".mkv"),
    # zlib level 1: 4x faster than the default for 10-15% more bytes
    "png-mov": Encoding("png", "rgba", {"compression_level": "1"}, ".mov"),
    "qtrle": Encoding("qtrle", "argb", {}, ".mov"),
    "vp9-alpha": Encoding(
        "libvpx-vp9", "yuva420p", {"crf": "20", "b": "0", "row-mt": "1"}, ".webm"
    ),
}


def encoding_of(encoding: str | Encoding, *, alpha: bool = False) -> Encoding:
    """An encoding option (a name or an ``Encoding``) checked against this FFmpeg build."""
    if isinstance(encoding, str):
        if encoding not in ENCODINGS:
            raise SamBatchError(
                f"unknown encoding {encoding!r}; choose one of {sorted(ENCODINGS)} "
                "or pass an Encoding(codec, pix_fmt, options, suffix)"
            )
        encoding = ENCODINGS[encoding]
    if encoding.codec not in av.codecs_available:
        raise SamBatchError(
            f"encoder {encoding.codec!r} is not in this FFmpeg build (PyAV {av.__version__}); "
            f"choose another encoding, e.g. one of {sorted(ENCODINGS)}"
        )
    if alpha and not encoding.has_alpha:
        raise SamBatchError(
            f"encoding {encoding.codec}/{encoding.pix_fmt} has no alpha channel; for an "
            "alpha matte use 'png-mov', 'qtrle' or 'vp9-alpha', or PNG frames"
        )
    return encoding


class VideoSink:
    """Encode frames at the source's timestamps into ``path``, with its audio if asked.

    Use as a context manager; :meth:`write` takes frames in order, as
    ``[H, W, 3]`` RGB or ``[H, W, 4]`` RGBA uint8 arrays.

    >>> sink = VideoSink("out.mp4", info, ENCODINGS["h264"], audio_from=info.url)  # doctest: +SKIP
    >>> with sink:  # doctest: +SKIP
    ...     for idx, rgb in read_frames(info, 0, info.num_frames):
    ...         sink.write(idx, rgb)
    """

    def __init__(
        self,
        path: str | Path,
        info: VideoInfo,
        encoding: Encoding,
        *,
        audio_from: str | None = None,
        storage_options: dict | None = None,
    ):
        self.info = info
        self.encoding = encoding
        self.written = 0
        self._container = av.open(str(path), mode="w")
        rate = Fraction(info.fps).limit_denominator(100_000) if info.fps > 0 else Fraction(25)
        self._stream = self._container.add_stream(encoding.codec, rate=rate)
        #: The encoded frame size: the source's, or padded by a column and/or row (the
        #: edge repeated, right and bottom, so pixel coordinates are unchanged) where a
        #: subsampled pixel format takes only even sizes.
        self.size = encoding.frame_size(info.width, info.height)
        self.padded = self.size != (info.width, info.height)
        if self.padded:
            log.warning(
                "%s: %s (%s) takes even frame sizes only: its %dx%d frames are written as "
                "%dx%d, the last column/row repeated (encoding 'ffv1' or 'lossless' keeps "
                "the size)", info.url, encoding.codec, encoding.pix_fmt, info.width,
                info.height, *self.size)
        self._stream.width, self._stream.height = self.size
        self._stream.pix_fmt = encoding.pix_fmt
        self._stream.codec_context.time_base = info.time_base
        self._stream.options = dict(encoding.options)
        self._audio_file = None
        self._audio_source = None
        self._audio: Iterator[av.Packet] | None = None
        self._next_audio: av.Packet | None = None
        if audio_from is not None:
            try:
                self._open_audio(audio_from, storage_options)
            except BaseException:
                self.close(ok=False)
                raise

    def _open_audio(self, url: str, storage_options: dict | None) -> None:
        """Map every audio stream of the source to a copy in the output."""
        self._audio_file = fsspec.open(url, "rb", **(storage_options or {})).open()
        source = self._audio_source = av.open(self._audio_file, "r")
        if not source.streams.audio:
            return
        mapping = {}
        for stream in source.streams.audio:
            try:
                mapping[stream.index] = self._container.add_stream_from_template(stream)
            except (av.error.FFmpegError, ValueError) as e:
                raise SamBatchError(
                    f"{url}: its {stream.codec_context.name} audio cannot go into a "
                    f"{self.encoding.suffix} file ({e}); pass audio=False or another encoding"
                ) from e

        def packets() -> Iterator[av.Packet]:
            for packet in source.demux(*source.streams.audio):
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                packet.stream = mapping[packet.stream.index]
                yield packet

        self._audio = packets()
        self._next_audio = next(self._audio, None)

    def write(self, frame_idx: int, image: np.ndarray) -> None:
        """Encode frame ``frame_idx`` (the next one) at the source frame's pts."""
        if frame_idx != self.written:
            raise ValueError(f"frames must come in order: got {frame_idx}, expected {self.written}")
        fmt = {3: "rgb24", 4: "rgba"}[image.shape[2]]
        if self.padded:
            extra_y, extra_x = self.size[1] - image.shape[0], self.size[0] - image.shape[1]
            image = np.pad(image, ((0, extra_y), (0, extra_x), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
        frame.pts = self.info.pts[frame_idx]
        frame.time_base = self.info.time_base
        try:
            packets = self._stream.encode(frame)
        except av.error.FFmpegError as e:  # the encoder opens on the first frame
            raise SamBatchError(
                f"{self.info.url}: {self.encoding.codec} ({self.encoding.pix_fmt}) cannot encode "
                f"its {self.info.width}x{self.info.height} frames ({e}); choose another "
                f"encoding, e.g. 'ffv1' (any size)"
            ) from e
        self._mux_video(packets)
        self.written += 1

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            if packet.dts is not None and packet.time_base is not None:
                self._mux_audio_until(float(packet.dts * packet.time_base))
            self._container.mux(packet)

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Mux the audio packets due before ``seconds`` (all of them for None)."""
        while self._next_audio is not None:
            p = self._next_audio
            if seconds is not None and float(p.dts * p.time_base) > seconds:
                return
            self._container.mux(p)
            self._next_audio = next(self._audio, None)  # type: ignore[arg-type]

    def close(self, ok: bool = True) -> None:
        """Flush the encoder and the rest of the audio, then close the file."""
        try:
            if ok:
                if self.written != self.info.num_frames:
                    raise SamBatchError(
                        f"{self.info.url}: wrote {self.written} of {self.info.num_frames} frames"
                    )
                self._mux_video(self._stream.encode(None))
                self._mux_audio_until(None)
        finally:
            self._container.close()
            if self._audio_source is not None:
                self._audio_source.close()
            if self._audio_file is not None:
                self._audio_file.close()

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)
