"""Finish a video once all its chunks are committed: its ``tracks/`` table.

Reads back only three small columns of the video's parts, so it works the same
for a video tracked in one go and for one resumed after a crash.
"""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.parquet as pq

from sam_batch.schema import MASKS_DIR, ORIGIN_PROMPT
from sam_batch.storage import Location, safe_name
from sam_batch.writer import ObjectStats, write_tracks


def object_stats(loc: Location, video_id: str) -> dict[int, ObjectStats]:
    """First/last frame with a non-empty mask and frames present, per object."""
    stats: dict[int, ObjectStats] = {}
    for part in loc.list(f"{MASKS_DIR}/{safe_name(video_id)}", ".parquet"):
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


def finalize_video(output_url: str, storage_options: dict, video_id: str) -> int:
    """Write the video's tracks table; returns the number of objects."""
    loc = Location(output_url, storage_options)
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
