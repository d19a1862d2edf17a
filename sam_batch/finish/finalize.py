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
from sam_batch.finish.segments import LocalTrack, Segment, owned_ranges
from sam_batch.media.storage import Location
from sam_batch.plan.discovery import Lifecycle
from sam_batch.plan.track_meta import read_meta


def object_stats(loc: Location, video_id: str) -> dict[int, ObjectStats]:
    """First/last frame with a non-empty mask and frames present, per object."""
    return merge_stats(  # each row once, compacted or not
        table_stats(_read(loc, part, ["frame_idx", "obj_id", "area"]))
        for part in visible_mask_files(loc, video_id)
    )


def table_stats(table: pa.Table) -> dict[int, ObjectStats]:
    """The object stats of mask rows (``frame_idx``, ``obj_id``, ``area``): every object
    with a row, first/last frame and frames with a non-empty mask.

    >>> t = pa.table({"frame_idx": [3, 4, 5, 4], "obj_id": [1, 1, 1, 2], "area": [9, 0, 9, 0]})
    >>> stats = table_stats(t)
    >>> stats[1], stats[2].frames_present
    (ObjectStats(first_frame=3, last_frame=5, frames_present=2), 0)
    """
    stats = {obj: ObjectStats() for obj in pc.unique(table["obj_id"]).to_pylist()}
    shown = table.filter(pc.greater(table["area"], 0)).group_by("obj_id").aggregate(
        [("frame_idx", "min"), ("frame_idx", "max"), ("frame_idx", "count")])
    for obj, first, last, present in zip(*(shown[c].to_pylist() for c in (
            "obj_id", "frame_idx_min", "frame_idx_max", "frame_idx_count")), strict=True):
        stats[obj] = ObjectStats(first, last, present)
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
    write_tracks(loc, video_id, [_track_row(video_id, obj_id, s, ORIGIN_PROMPT, [f"0:{obj_id}"])
                                 for obj_id, s in sorted(stats.items())])
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
    from sam_batch.finish.stitch import stitch

    loc = Location(output_url, storage_options)
    staged = [MaskFile.parse(p) for p in loc.list(masks_folder(video_id, staged=True), ".parquet")]
    parts = {s.index: [f for f in staged if f.segment == s.index] for s in segments}
    shared = _shared_frames(segments)
    local = [_local_segment(loc, seg, parts[seg.index], shared[seg.index]) for seg in segments]
    result = stitch(local, height, width, iou_threshold)
    owned = dict(zip([s.index for s in segments], owned_ranges(local), strict=True))
    stats = merge_stats(
        _commit_part(loc, part, result.id_map(index), owned[index])
        for index, seg_parts in parts.items() for part in seg_parts
    )
    tracks = [t for t in result.tracks if t.obj_id in stats]
    write_tracks(loc, video_id, [_track_row(video_id, t.obj_id, stats[t.obj_id], t.origin,
                                            list(t.sources)) for t in tracks])
    loc.delete(masks_folder(video_id, staged=True))
    return len(tracks)


def _shared_frames(segments: list[StagedSegment]) -> dict[int, set[int]]:
    """Each segment's frames shared with a neighbour: where the stitcher's evidence is."""
    shared: dict[int, set[int]] = {s.index: set() for s in segments}
    for a, b in pairwise(segments):
        shared[a.index].update(range(b.start, a.end))
        shared[b.index].update(range(b.start, a.end))
    return shared


def _local_segment(loc: Location, seg: StagedSegment, parts: list[MaskFile],
                   shared: set[int]) -> Segment:
    """One segment's kept objects as the stitcher takes them (masks leave Arrow only for
    the shared frames); a prompted object is pinned to its own id."""
    life = read_meta(loc.read(seg.final_state)).lifecycle
    keep = Lifecycle(dict(life), None).kept_ids()
    kept = pa.array(sorted(keep), pa.int64())
    near = pa.array(sorted(shared), pa.int64())
    firsts: dict[int, ObjectStats] = {}
    masks: dict[int, dict[int, str]] = {}
    for part in parts:  # one at a time
        table = _read(loc, part.path, ["frame_idx", "obj_id", "area", "rle"])
        table = table.filter(pc.is_in(table["obj_id"], kept))
        firsts = merge_stats([firsts, table_stats(table)])
        evidence = table.filter(pc.is_in(table["frame_idx"], near))
        for frame, obj, mask in zip(*(evidence[c].to_pylist() for c in
                                      ("frame_idx", "obj_id", "rle")), strict=True):
            masks.setdefault(obj, {})[frame] = mask
    tracks = []
    for obj in sorted(keep):
        first = firsts.get(obj, ObjectStats()).first_frame
        pinned = obj if life[str(obj)]["origin"] == ORIGIN_PROMPT else None
        tracks.append(LocalTrack(obj, seg.end if first is None else first,
                                 masks.get(obj, {}), pinned))
    return Segment(seg.index, seg.start, seg.end, tuple(tracks))


def _commit_part(loc: Location, part: MaskFile, ids: dict[int, int],
                 owned: tuple[int, int]) -> dict[int, ObjectStats]:
    """Commit one staged part under global ``ids``: the frames its segment owns, the
    objects stitched; returns the committed rows' object stats."""
    lo, hi = owned
    table = _read(loc, part.path, None)
    frames = table["frame_idx"]
    keep_rows = pc.and_(pc.and_(pc.greater_equal(frames, lo), pc.less(frames, hi)),
                        pc.is_in(table["obj_id"], pa.array(list(ids), pa.int64())))
    table = table.filter(keep_rows)
    new_ids = pa.array([ids[o] for o in table["obj_id"].to_pylist()], pa.int64())
    table = table.set_column(table.schema.get_field_index("obj_id"), "obj_id", new_ids)
    table = table.sort_by([("frame_idx", "ascending"), ("obj_id", "ascending")])
    loc.write(part.committed().path, table_bytes(table.cast(MASKS_SCHEMA)))
    return table_stats(table)


def _track_row(video_id: str, obj_id: int, stats: ObjectStats, origin: str,
               sources: list[str]) -> dict:
    """One row of the ``tracks/`` table."""
    return {
        "video_id": video_id,
        "obj_id": obj_id,
        "first_frame": stats.first_frame,
        "last_frame": stats.last_frame,
        "frames_present": stats.frames_present,
        "origin": origin,
        "sources": sources,
    }


def _read(loc: Location, part: str, columns: list[str] | None) -> pa.Table:
    return pq.read_table(loc.path(part), filesystem=loc.fs, columns=columns)
