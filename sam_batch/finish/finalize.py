"""Finish a video once all its chunks are committed: its ``tracks/`` table.

A video tracked in one segment without discovery already has its final parts:
finishing reads back three small columns for the tracks table. A video run as
parallel segments or with discovery was staged: finishing stitches it into
global ids first (``finalize_stitched``). Both work the same for a video resumed
after a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sam_batch.dataset.compact import visible_mask_files
from sam_batch.dataset.layout import MaskFile, masks_folder
from sam_batch.dataset.schema import MASKS_SCHEMA, ORIGIN_PROMPT
from sam_batch.dataset.writer import ObjectStats, table_bytes, write_tracks
from sam_batch.media.storage import Location
from sam_batch.plan.discovery import Lifecycle
from sam_batch.plan.track_meta import read_meta


def object_stats(loc: Location, video_id: str) -> dict[int, ObjectStats]:
    """First/last frame with a non-empty mask and frames present, per object."""
    stats: dict[int, ObjectStats] = {}
    for part in visible_mask_files(loc, video_id):  # each row once, compacted or not
        table = pq.read_table(loc.path(part), filesystem=loc.fs,
                              columns=["frame_idx", "obj_id", "area"])
        for obj_id in pc.unique(table["obj_id"]).to_pylist():
            rows = table.filter(pc.and_(pc.equal(table["obj_id"], obj_id),
                                        pc.greater(table["area"], 0)))
            frames = rows["frame_idx"]
            part_stats = ObjectStats()
            if rows.num_rows:
                part_stats = ObjectStats(pc.min(frames).as_py(), pc.max(frames).as_py(),
                                         rows.num_rows)
            stats[obj_id] = stats.get(obj_id, ObjectStats()).merge(part_stats)
    return stats


def finalize_video(output_url: str, storage_options: dict, video_id: str,
                   stats: dict[int, ObjectStats] | None = None) -> int:
    """Write the video's tracks table; returns the number of objects.

    ``stats``: every chunk's object stats merged, when the caller saw every chunk
    finish (a job not resumed); else they are read back from the committed parts.
    """
    loc = Location(output_url, storage_options)
    if stats is None:
        stats = object_stats(loc, video_id)
    write_tracks(loc, video_id, [
        {
            "video_id": video_id,
            "obj_id": obj_id,
            "first_frame": s.first_frame,
            "last_frame": s.last_frame,
            "frames_present": s.frames_present,
            "origin": ORIGIN_PROMPT,
            "sources": [f"0:{obj_id}"],
        }
        for obj_id, s in sorted(stats.items())
    ])
    return len(stats)


def merge_stats(chunks: Iterable[dict[int, ObjectStats]]) -> dict[int, ObjectStats]:
    """One video's object stats from its chunks' (``ChunkResult.stats``).

    >>> a, b = {1: ObjectStats(3, 5, 2)}, {1: ObjectStats(8, 9, 2), 2: ObjectStats()}
    >>> merged = merge_stats([a, b])
    >>> merged[1], merged[2].frames_present
    (ObjectStats(first_frame=3, last_frame=9, frames_present=4), 0)
    """
    merged: dict[int, ObjectStats] = {}
    for chunk in chunks:
        for obj_id, s in chunk.items():
            merged[obj_id] = merged.get(obj_id, ObjectStats()).merge(s)
    return merged


@dataclass(frozen=True)
class StagedSegment:
    """A segment as finalize needs it: its frames and the state after its last chunk."""

    index: int
    start: int
    end: int
    final_state: str  # path of the segment's last checkpoint (holds the life cycle)


def finalize_stitched(output_url: str, storage_options: dict, video_id: str,
                      segments: list[StagedSegment], height: int, width: int,
                      iou_threshold: float = 0.5) -> int:
    """Stitch a video's staged segments into global ids and commit its masks and tracks.

    Streams: a first pass reads only the overlap frames' masks (the stitcher's
    evidence) and three small columns; a second rewrites each staged part with
    global ids, keeping the frames its segment owns and the objects worth
    keeping (prompted, or discovered and confirmed). Re-running it after a
    crash rewrites the same parts: the staging area is removed last.
    """
    # Imported here: scipy, which the common finalize_video (one remote task per
    # video, in a light worker process) never needs.
    from sam_batch.finish.stitch import LocalTrack, Segment, owned_ranges, stitch

    loc = Location(output_url, storage_options)
    staged = [MaskFile.parse(p) for p in loc.list(masks_folder(video_id, staged=True), ".parquet")]
    parts = {s.index: [f for f in staged if f.segment == s.index] for s in segments}
    bounds = {s.index: (s.start, s.end) for s in segments}
    shared: dict[int, set[int]] = {s.index: set() for s in segments}
    for a, b in pairwise(segments):
        shared[a.index].update(range(b.start, a.end))
        shared[b.index].update(range(b.start, a.end))

    local_segments = []
    origins: dict[tuple[int, int], str] = {}
    for seg in segments:
        life = read_meta(loc.read(seg.final_state)).lifecycle
        keep = Lifecycle(dict(life), None).kept_ids()
        firsts: dict[int, int] = {}
        masks: dict[int, dict[int, str]] = {}
        kept = pa.array(sorted(keep), pa.int64())
        near = pa.array(sorted(shared[seg.index]), pa.int64())
        for part in parts[seg.index]:  # masks leave Arrow only for the shared frames
            table = _read(loc, part.path, ["frame_idx", "obj_id", "area", "rle"])
            table = table.filter(pc.is_in(table["obj_id"], kept))
            present = table.filter(pc.greater(table["area"], 0)).group_by("obj_id").aggregate(
                [("frame_idx", "min")])
            for obj, frame in zip(present["obj_id"].to_pylist(),
                                  present["frame_idx_min"].to_pylist(), strict=True):
                firsts[obj] = min(firsts.get(obj, frame), frame)
            evidence = table.filter(pc.is_in(table["frame_idx"], near))
            for frame, obj, mask in zip(*(evidence[c].to_pylist() for c in
                                          ("frame_idx", "obj_id", "rle")), strict=True):
                masks.setdefault(obj, {})[frame] = mask
        tracks = []
        for obj in sorted(keep):
            origin = life[str(obj)]["origin"]
            origins[seg.index, obj] = origin
            tracks.append(LocalTrack(obj, firsts.get(obj, bounds[seg.index][1]),
                                     masks.get(obj, {}),
                                     obj if origin == ORIGIN_PROMPT else None))
        local_segments.append(Segment(seg.index, seg.start, seg.end, tuple(tracks)))

    result = stitch(local_segments, height, width, iou_threshold)
    owned = dict(zip([s.index for s in segments], owned_ranges(local_segments), strict=True))
    stats: dict[int, ObjectStats] = {}
    for index, seg_parts in parts.items():
        ids = result.id_map(index)
        lo, hi = owned[index]
        for part in seg_parts:
            table = _read(loc, part.path, None)
            frames = table["frame_idx"]
            keep_rows = pc.and_(pc.and_(pc.greater_equal(frames, lo), pc.less(frames, hi)),
                                pc.is_in(table["obj_id"], pa.array(list(ids), pa.int64())))
            table = table.filter(keep_rows)
            new_ids = pa.array([ids[o] for o in table["obj_id"].to_pylist()], pa.int64())
            table = table.set_column(table.schema.get_field_index("obj_id"), "obj_id", new_ids)
            table = table.sort_by([("frame_idx", "ascending"), ("obj_id", "ascending")])
            for frame, obj, area in zip(*(table[c].to_pylist() for c in
                                          ("frame_idx", "obj_id", "area")), strict=True):
                stats.setdefault(obj, ObjectStats()).add(frame, area)
            loc.write(part.committed().path, table_bytes(table.cast(MASKS_SCHEMA)))
    write_tracks(loc, video_id, [
        {
            "video_id": video_id,
            "obj_id": t.obj_id,
            "first_frame": stats.get(t.obj_id, ObjectStats()).first_frame,
            "last_frame": stats.get(t.obj_id, ObjectStats()).last_frame,
            "frames_present": stats.get(t.obj_id, ObjectStats()).frames_present,
            "origin": t.origin,
            "sources": list(t.sources),
        }
        for t in result.tracks if t.obj_id in stats
    ])
    loc.delete(masks_folder(video_id, staged=True))
    return sum(1 for t in result.tracks if t.obj_id in stats)


def _read(loc: Location, part: str, columns: list[str] | None) -> pa.Table:
    return pq.read_table(loc.path(part), filesystem=loc.fs, columns=columns)
