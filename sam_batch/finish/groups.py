"""Finish a video whose objects were tracked in groups: merge the groups' parts.

Each object group (``plan.object_groups``) wrote its staged parts as a segment
of its own, ``_staging/masks/<video>/part-s<group>-c<chunk>``, all over the
same chunks. Finishing writes one committed part per chunk holding every
group's rows (``part-s000-c<chunk>``, as the unsplit run names it), then the
tracks table, and removes the staging area last: re-running it after a crash
rewrites the same parts.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from sam_batch.dataset.layout import MaskFile, mask_part_path, masks_folder
from sam_batch.dataset.schema import MASKS_SCHEMA
from sam_batch.dataset.writer import table_bytes
from sam_batch.finish.finalize import finalize_video
from sam_batch.media.storage import Location


def finalize_groups(output_url: str, storage_options: dict, video_id: str, groups: int) -> int:
    """Merge the ``groups`` groups' staged parts chunk by chunk; returns the objects."""
    loc = Location(output_url, storage_options)
    staged = [MaskFile.parse(p) for p in loc.list(masks_folder(video_id, staged=True),
                                                  ".parquet")]
    by_chunk: dict[int, list[MaskFile]] = {}
    for f in staged:
        by_chunk.setdefault(f.chunk_idx, []).append(f)
    for chunk_idx, files in sorted(by_chunk.items()):
        if sorted(f.segment for f in files) != list(range(groups)):
            raise RuntimeError(f"{video_id} chunk {chunk_idx}: parts of groups "
                               f"{sorted(f.segment for f in files)}, expected {groups} groups")
        table = pa.concat_tables(
            pq.read_table(loc.path(f.path), filesystem=loc.fs, schema=MASKS_SCHEMA)
            for f in files
        ).sort_by([("frame_idx", "ascending"), ("obj_id", "ascending")])
        loc.write(mask_part_path(video_id, 0, chunk_idx), table_bytes(table))
    objects = finalize_video(output_url, storage_options, video_id, None)
    loc.delete(masks_folder(video_id, staged=True))
    return objects
