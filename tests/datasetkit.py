"""Small real sam_batch datasets for tests, written without running SAM 2.

The masks come from a synthetic clip's exact ground truth (or from the
caller) and go through the real writer (``ChunkMasks``, ``write_mask_part``,
``write_video_row``, ``write_tracks``, ``write_job_file``), in several chunk
parts, next to the clip's real mp4. So exports and evaluation read a dataset
laid out byte for byte like a run's, and every test knows exactly which mask
each (video, frame, object) must have.

What a built video holds, on purpose:

- objects start having rows at their first visible frame (before that they
  have no rows: "absent"), and keep rows to the end, with ``area == 0`` once
  they have left the frame (an empty mask of a live object);
- with ``box_object``, an extra object :data:`BOX_ID` whose mask is object 1's
  bounding box on every frame where object 1 is visible, so it overlaps
  object 1 (and possibly others) there: the overlap rules have a case;
- with ``audio``, an AAC track in the mp4, for exports that must keep it.

>>> built = build_dataset(tmp_path)                                    # doctest: +SKIP
>>> built.videos["clip-a"].masks[1].shape  # (T, H, W)                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from sam_batch.dataset.writer import (
    ChunkMasks,
    ObjectStats,
    write_job_file,
    write_mask_part,
    write_tracks,
    write_video_row,
)
from sam_batch.media.storage import Location
from sam_batch.media.video import probe
from sam_batch.synthetic import Clip, generate, write_davis_png, write_mp4

#: Id of the object that is object 1's bounding box (overlaps object 1).
BOX_ID = 9


@dataclass(frozen=True)
class BuiltVideo:
    """One video of a built dataset and exactly what the dataset says about it.

    ``masks[k]`` is ``[T, H, W]`` bool (all False where ``k`` has no row);
    ``present[k]`` the frames where ``k`` has a row (empty or not).
    """

    video_id: str
    path: Path | None
    masks: dict[int, np.ndarray]
    present: dict[int, frozenset[int]]
    fps: float
    clip: Clip | None = None

    @property
    def num_frames(self) -> int:
        return len(next(iter(self.masks.values())))

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.masks.values())).shape[1:]

    def overlap_frame(self, a: int, b: int) -> int:
        """The first frame where objects ``a`` and ``b`` overlap."""
        both = (self.masks[a] & self.masks[b]).reshape(self.num_frames, -1).any(axis=1)
        return int(np.flatnonzero(both)[0])


@dataclass(frozen=True)
class BuiltDataset:
    """A dataset directory: its URL, its ok videos by id, and the ids of failed ones."""

    url: str
    videos: dict[str, BuiltVideo]
    failed: tuple[str, ...] = ()


def write_video(
    root: str | Path,
    video_id: str,
    masks: Mapping[int, np.ndarray],
    *,
    video_path: str | Path | None = None,
    fps: float = 24.0,
    present: Mapping[int, Iterable[int]] | None = None,
    times: list[float] | None = None,
    chunk_frames: int = 4,
    storage_options: dict | None = None,
) -> BuiltVideo:
    """Write one video's masks (``{obj_id: [T, H, W]}``) as a run would, in chunk parts.

    ``present[k]`` lists the frames where ``k`` gets a row (default: all);
    ``times`` the frames' ``time_s`` (default ``t / fps``).
    Scores are ``0.5 + obj_id / 100`` so tests can tell objects' scores apart.
    """
    loc = Location(str(root), storage_options)
    masks = {int(k): np.asarray(v, bool) for k, v in masks.items()}
    num_frames, height, width = next(iter(masks.values())).shape
    present = {
        k: frozenset(present[k]) if present and k in present else frozenset(range(num_frames))
        for k in masks
    }
    stats: dict[int, ObjectStats] = {}
    chunks = 0
    for chunk_idx, start in enumerate(range(0, num_frames, chunk_frames)):
        rows = ChunkMasks(video_id, chunk_idx=chunk_idx)
        for t in range(start, min(num_frames, start + chunk_frames)):
            ids = [k for k in sorted(masks) if t in present[k]]
            if ids:
                rows.add(
                    t,
                    times[t] if times else t / fps,
                    ids,
                    np.stack([masks[k][t] for k in ids]),
                    np.array([0.5 + k / 100 for k in ids], np.float32),
                )
        write_mask_part(loc, rows, segment=0)
        for k, s in rows.stats.items():
            stats[k] = stats.get(k, ObjectStats()).merge(s)
        chunks += 1
    write_tracks(
        loc,
        video_id,
        [
            {
                "video_id": video_id,
                "obj_id": k,
                "first_frame": s.first_frame,
                "last_frame": s.last_frame,
                "frames_present": s.frames_present,
                "origin": "prompt",
                "sources": [f"0:{k}"],
            }
            for k, s in sorted(stats.items())
        ],
    )
    write_video_row(
        loc,
        {
            "video_id": video_id,
            "video": str(video_path or ""),
            "status": "ok",
            "frames": num_frames,
            "fps": fps,
            "width": width,
            "height": height,
            "objects": len(masks),
            "chunks": chunks,
            "wall_s": 0.0,
        },
    )
    has_row = {k: np.array([t in present[k] for t in range(num_frames)]) for k in masks}
    held = {k: m & has_row[k][:, None, None] for k, m in masks.items()}
    return BuiltVideo(video_id, Path(video_path) if video_path else None, held, present, fps)


def write_failed(root: str | Path, video_id: str, storage_options: dict | None = None) -> None:
    """A ``failed`` videos/ row, as a run records a video it could not read."""
    write_video_row(
        Location(str(root), storage_options),
        {
            "video_id": video_id,
            "video": f"/nowhere/{video_id}.mp4",
            "status": "failed",
            "error": "does not exist; check the path or URL",
        },
    )


def finish(root: str | Path, storage_options: dict | None = None) -> None:
    """Write ``_job.json``: the dataset is complete."""
    write_job_file(Location(str(root), storage_options), {"counts": {}, "model": "synthetic-gt"})


def clip_video(
    root: Path,
    video_id: str,
    clip: Clip,
    *,
    box_object: bool = False,
    audio: bool = False,
    vfr: bool = False,
    chunk_frames: int = 4,
) -> BuiltVideo:
    """Write ``clip``'s mp4 beside ``root`` and its GT masks as the dataset's masks.

    ``vfr`` gives the frames uneven durations, so an export that kept frame
    count but not timestamps would be caught.
    """
    sources = root.parent / f"{root.name}-sources"
    path = sources / f"{video_id.replace(' ', '_')}.mp4"
    if vfr:
        write_vfr_mp4(clip, path)
    else:
        write_mp4(clip, path)
    if audio:
        add_audio(path)
    masks = {k: clip.masks[k].copy() for k in clip.obj_ids}
    present = {}
    for k, m in masks.items():
        visible = np.flatnonzero(m.reshape(len(m), -1).any(axis=1))
        present[k] = range(int(visible[0]) if len(visible) else len(m), len(m))
    if box_object:
        box = np.zeros_like(masks[1])
        for t in range(len(box)):
            ys, xs = np.nonzero(masks[1][t])
            if len(ys):
                box[t, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
        masks[BOX_ID] = box
        present[BOX_ID] = [t for t in range(len(box)) if box[t].any()]
    info = probe(str(path))
    built = write_video(
        root,
        video_id,
        masks,
        times=[info.time_s(t) for t in range(info.num_frames)],
        video_path=path,
        fps=clip.fps,
        present=present,
        chunk_frames=chunk_frames,
    )
    return BuiltVideo(built.video_id, path, built.masks, built.present, built.fps, clip)


def build_dataset(root: Path, *, audio: bool = True) -> BuiltDataset:
    """The standard test dataset at ``root``.

    ``clip-a``: 64x48, 10 frames at variable frame rate, objects 1..3 plus the
    box object (overlaps object 1), with AAC audio when ``audio``; ``clip b``
    (a space in its id): 48x32, 7 frames, objects 1..2; ``broken``: failed.
    """
    a = clip_video(
        root,
        "clip-a",
        generate(3, width=64, height=48, num_frames=10),
        box_object=True,
        audio=audio,
        vfr=True,
    )
    b = clip_video(root, "clip b", generate(5, width=48, height=32, num_frames=7, num_objects=2))
    write_failed(root, "broken")
    finish(root)
    return BuiltDataset(str(root), {"clip-a": a, "clip b": b}, ("broken",))


def gt_pngs(folder: Path, built: BuiltDataset) -> Path:
    """Each video's synthetic ground truth as DAVIS PNG folders, ``<folder>/<video_id>/``."""
    for video_id, video in built.videos.items():
        write_davis_png(video.clip, folder / video_id)
    return folder


def add_audio(path: Path, seconds: float = 1.0, rate: int = 48000) -> None:
    """Rewrite the mp4 at ``path`` with a 440 Hz AAC track beside its video (copied)."""
    tmp = path.with_suffix(".audio.mp4")
    with av.open(str(path)) as src, av.open(str(tmp), "w") as out:
        vin = src.streams.video[0]
        vout = out.add_stream_from_template(vin)
        aout = out.add_stream("aac", rate=rate, layout="mono")
        samples = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)
        for packet in src.demux(vin):
            if packet.dts is not None:
                packet.stream = vout
                out.mux(packet)
        size = 1024
        for i in range(0, len(samples), size):
            chunk = np.zeros(size, np.float32)
            part = samples[i : i + size]
            chunk[: len(part)] = part
            frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
            out.mux(aout.encode(frame))
        out.mux(aout.encode(None))
    tmp.replace(path)


def write_vfr_mp4(clip: Clip, path: Path) -> None:
    """H.264 mp4 of ``clip`` whose frame durations alternate 30, 40 and 55 ms."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = (
            clip.config.width,
            clip.config.height,
            "yuv420p",
        )
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "16"}
        pts = 0
        for t, image in enumerate(clip.frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            out.mux(stream.encode(frame))
            pts += (30, 40, 55)[t % 3]
        out.mux(stream.encode(None))
