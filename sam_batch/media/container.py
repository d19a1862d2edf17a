"""Opening a video file: fsspec for the bytes, PyAV for the container.

Every way this can fail (a missing file, a bad URL or credentials, bytes that
are no media file, a file without a video stream, an mp4 cut before its index)
becomes a ``VideoError`` that names the video and says what to do; ``REENCODE``
is the remedy for a damaged file, which probing and decoding give too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import av
import fsspec

from sam_batch.errors import VideoError

REENCODE = "re-encode it or download it again"


@contextlib.contextmanager
def open_video(
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
                f"truncated or not a video; {REENCODE}",
                "format",
            ) from e
        try:
            if not container.streams:
                raise VideoError(
                    url,
                    "is not a readable media file: no streams found (not a video, or an mp4 cut "
                    f"short before its index was written); {REENCODE}",
                    "format",
                )
            if not container.streams.video:
                found = ", ".join(s.type for s in container.streams)
                raise VideoError(
                    url,
                    f"has no video stream (found: {found}); pass a video file. If it is one, it "
                    f"is damaged or truncated (an mp4 cut before its index); {REENCODE}",
                    "video stream",
                )
            yield container, container.streams.video[0]
        finally:
            container.close()
    finally:
        file.close()
