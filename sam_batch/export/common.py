"""What every export needs: the videos to export, masks on every frame, pixels, files.

An export reads one video at a time and, within it, one chunk part of masks
at a time (``Dataset.iter_frames``), so its memory does not grow with the
video's length. The dataset only holds rows for frames where an object was
tracked; the formats want every frame, so :func:`every_frame` fills the gaps
with no objects. Exports that draw on pixels pair those frames with the
decoded source video (:func:`frames_with_masks`), checking that the source is
still the video the masks were made from.

Files are written whole or not at all: small ones through ``Location.write``;
big ones (videos, JSON, tables) are built in a local temporary file and then
published by :func:`local_file`: an ``os.replace`` on a local disk, a single
upload to an object store.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from sam_batch.dataset.reader import Dataset, MaskRow
from sam_batch.dataset.schema import STATUS_OK
from sam_batch.errors import SamBatchError
from sam_batch.export.videofile import Encoding, VideoSink
from sam_batch.media.decode import read_frames
from sam_batch.media.storage import Location, safe_name
from sam_batch.media.video import VideoInfo, probe
from sam_batch.synthetic.writers import davis_palette

log = logging.getLogger("sam_batch")

#: The DAVIS / PASCAL VOC palette, flat ``[r0, g0, b0, r1, ...]``; index = object id.
PALETTE: list[int] = davis_palette()


def select_videos(ds: Dataset, videos: Iterable[str] | None) -> list[str]:
    """The ids to export: all ``ok`` videos, or the given ones, each checked.

    >>> select_videos(ds, None)          # doctest: +SKIP
    ['clip-a', 'clip b']
    """
    rows: dict[str, list[dict]] = {}
    for r in ds.videos().to_pylist():  # an id may have several rows (manifest duplicates)
        rows.setdefault(r["video_id"], []).append(r)
    ok = {v for v, rs in rows.items() if any(r["status"] == STATUS_OK for r in rs)}
    if videos is None:
        return sorted(ok)
    if isinstance(videos, str):
        videos = [videos]
    chosen = list(dict.fromkeys(videos))
    for video_id in chosen:
        if video_id not in rows:
            known = ", ".join(sorted(rows)) or "none"
            raise SamBatchError(
                f"video {video_id!r} is not in the dataset {ds.url} (videos: {known})"
            )
        if video_id not in ok:
            raise SamBatchError(
                f"video {video_id!r} failed in the dataset {ds.url} "
                f"({rows[video_id][0]['error']}); it has no masks to export"
            )
    return chosen


class VideosFailed(SamBatchError):
    """Some videos could not be exported; every other one was (``written``)."""

    def __init__(self, written: list[str], failed: list[tuple[str, str]]):
        self.written = written
        self.failed = failed
        super().__init__("; ".join(f"{v}: {e}" for v, e in failed))


def each_video(videos: Iterable[str], export_one: Callable[[str], list[str]]) -> list[str]:
    """``export_one(video_id)`` for every video, in order; the URLs they wrote.

    A video that cannot be exported (an odd source, a missing file) does not stop
    the others: its error is kept, and :class:`VideosFailed` names every such video
    once all the others are written.
    """
    written: list[str] = []
    failed: list[tuple[str, str]] = []
    for video_id in videos:
        try:
            written += export_one(video_id)
        except Exception as e:  # one video's failure, reported at the end
            message = str(e) if isinstance(e, SamBatchError) else f"{type(e).__name__}: {e}"
            log.warning("video %r not exported: %s", video_id, message)
            failed.append((video_id, message))
    if failed:
        raise VideosFailed(written, failed)
    return written


def video_row(ds: Dataset, video_id: str) -> dict:
    """The ``videos/`` row, with the fields every export relies on checked."""
    row = ds.video(video_id)
    for name in ("frames", "width", "height"):
        if not row.get(name):
            raise SamBatchError(f"video {video_id!r}: the dataset's videos/ row has no {name}")
    return row


def every_frame(
    ds: Dataset, video_id: str, row: dict | None = None
) -> Iterator[tuple[int, dict[int, MaskRow]]]:
    """``(frame_idx, {obj_id: MaskRow})`` for every frame ``0 .. frames - 1``, in order.

    Frames without rows come as ``{}``. Rows of another size than the video,
    frames out of order or past the video's end are errors, not skipped.
    """
    row = row or video_row(ds, video_id)
    num_frames, size = int(row["frames"]), (int(row["height"]), int(row["width"]))
    stored = ds.iter_frames(video_id)
    pending = next(stored, None)
    for t in range(num_frames):
        if pending is not None and pending[0] < t:
            raise SamBatchError(
                f"video {video_id!r}: masks of frame {pending[0]} come after frame {t - 1}; "
                "two mask parts cover the same frames"
            )
        if pending is not None and pending[0] == t:
            objects = pending[1]
            for m in objects.values():
                if (m.height, m.width) != size:
                    raise SamBatchError(
                        f"video {video_id!r}: object {m.obj_id} on frame {t} is "
                        f"{m.height}x{m.width}, the video is {size[0]}x{size[1]}"
                    )
            pending = next(stored, None)
            yield t, objects
        else:
            yield t, {}
    if pending is not None:
        raise SamBatchError(
            f"video {video_id!r}: masks at frame {pending[0]} but the video has {num_frames} frames"
        )


def source_info(row: dict, storage_options: dict | None) -> VideoInfo:
    """Probe the source video and check it is the one the masks were made from."""
    info = probe(row["video"], storage_options)
    if (info.num_frames, info.width, info.height) != (row["frames"], row["width"], row["height"]):
        raise SamBatchError(
            f"video {row['video_id']!r}: its source {row['video']} now has {info.num_frames} "
            f"frames of {info.width}x{info.height}, the masks were made on {row['frames']} "
            f"frames of {row['width']}x{row['height']}; point the dataset at the original"
        )
    return info


def frames_with_masks(
    ds: Dataset, video_id: str, info: VideoInfo, row: dict, storage_options: dict | None
) -> Iterator[tuple[int, np.ndarray, dict[int, MaskRow]]]:
    """``(frame_idx, rgb, {obj_id: MaskRow})`` for every frame: decoded pixels with masks."""
    frames = read_frames(info, 0, info.num_frames, storage_options)
    for (t, objects), (t2, rgb) in zip(every_frame(ds, video_id, row), frames, strict=True):
        assert t == t2, "read_frames yields every frame in order"
        yield t, rgb, objects


def parse_objects(objects: Iterable[int] | int | None) -> frozenset[int] | None:
    """An object selection option: None (all) or a set of ids."""
    if objects is None:
        return None
    if isinstance(objects, (int, np.integer)):
        return frozenset([int(objects)])
    return frozenset(int(o) for o in objects)


def selected(objects: dict[int, MaskRow], chosen: frozenset[int] | None) -> dict[int, MaskRow]:
    """The rows of the chosen objects that have pixels, by ascending id."""
    return {
        k: objects[k]
        for k in sorted(objects)
        if objects[k].area > 0 and (chosen is None or k in chosen)
    }


def union_mask(objects: dict[int, MaskRow], height: int, width: int) -> np.ndarray:
    """The union of the rows' masks, ``[H, W]`` bool."""
    out = np.zeros((height, width), bool)
    for m in objects.values():
        out |= m.mask()
    return out


def color_of(obj_id: int) -> tuple[int, int, int]:
    """Object ``obj_id``'s DAVIS palette colour (ids past 255 reuse 1..255)."""
    index = obj_id if 0 < obj_id < 256 else 1 + (obj_id - 1) % 255
    return tuple(PALETTE[3 * index : 3 * index + 3])  # type: ignore[return-value]


def split_target(out_url: str, suffixes: tuple[str, ...], default_name: str) -> tuple[str, str]:
    """``(directory URL, file name)`` of a one-file export.

    ``out_url`` ending in one of ``suffixes`` names the file itself; otherwise
    it is a directory and the file is ``default_name`` in it.

    >>> split_target("s3://b/x/ann.json", (".json",), "instances.json")
    ('s3://b/x', 'ann.json')
    >>> split_target("/data/out", (".json",), "instances.json")
    ('/data/out', 'instances.json')
    """
    url = out_url.rstrip("/")
    if url.lower().endswith(suffixes):
        parent, _, name = url.rpartition("/")
        return (parent or "."), name
    return url, default_name


def video_dir(video_id: str) -> str:
    """A video's directory (or file stem) name in an export: ``safe_name`` of its id."""
    return safe_name(video_id)


@contextlib.contextmanager
def local_file(loc: Location, relpath: str) -> Iterator[Path]:
    """A local path to build ``relpath`` in; published when the block ends without error.

    On a local disk the file is built beside its final name (same filesystem,
    so the rename is atomic); for an object store it is built in a temporary
    directory and uploaded once. Either way a failed export leaves nothing.
    """
    suffix = posixpath.splitext(relpath)[1]
    if loc.is_local:
        final = Path(loc.path(relpath))
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f"{final.stem}.tmp-{uuid.uuid4().hex}{suffix}")
        try:
            yield tmp
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        with tempfile.TemporaryDirectory(prefix="sam_batch_export_") as tmpdir:
            tmp = Path(tmpdir) / f"file{suffix}"
            yield tmp
            publish_file(loc, relpath, tmp)


def publish_file(loc: Location, relpath: str, local_path: Path) -> None:
    """Upload a finished local file to ``relpath`` of a remote location (one PUT or multipart)."""
    loc.fs.put_file(str(local_path), loc.path(relpath))


def write_video(
    loc: Location,
    video_id: str,
    row: dict,
    info: VideoInfo,
    encoding: Encoding,
    pictures: Iterable[tuple[int, np.ndarray]],
    *,
    audio: bool,
    storage_options: dict | None,
) -> str:
    """``<video><suffix>`` from ``(frame_idx, rgb)`` pictures, with the source's frame
    timing (and audio streams, if ``audio``), published atomically; returns its URL."""
    name = f"{video_dir(video_id)}{encoding.suffix}"
    with (
        local_file(loc, name) as path,
        VideoSink(path, info, encoding, audio_from=row["video"] if audio else None,
                  storage_options=storage_options) as sink,
    ):
        for t, picture in pictures:
            sink.write(t, picture)
    return loc.url_of(name)


def rgb_png(picture: np.ndarray) -> bytes:
    """A PNG of an RGB or RGBA ``uint8`` picture."""
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    return buf.getvalue()
