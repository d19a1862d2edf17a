"""The output contract: Arrow schemas of the dataset that downstream users read.

A dataset directory holds ``masks/``, ``tracks/`` and ``videos/`` as Parquet and
``_job.json`` last (``dataset.layout`` names every path). These schemas are the
one place the columns are named; the writer, the exports, the metrics and
``sam-batch inspect`` all import them, so a column cannot drift between the code
that writes it and the code that reads it.
"""

from __future__ import annotations

import pyarrow as pa

#: Bumped when a column is added, removed or changes meaning.
DATASET_FORMAT_VERSION = 1

#: One row per (video, frame, object). ``rle`` is COCO compressed RLE counts
#: (column-major, pycocotools-compatible); an empty mask of a live object is a
#: row with ``area == 0``.
MASKS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("frame_idx", pa.int64(), nullable=False),
        pa.field("obj_id", pa.int64(), nullable=False),
        pa.field("time_s", pa.float64(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("rle", pa.string(), nullable=False),
        pa.field("bbox", pa.list_(pa.float32(), 4), nullable=False),
        pa.field("area", pa.int64(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("chunk_idx", pa.int32(), nullable=False),
    ]
)

#: One row per (video, object). ``first_frame``/``last_frame`` bound the frames
#: where its mask is non-empty (null if it never is) and ``frames_present``
#: counts them. ``sources`` names the segment-local tracks the global track was
#: stitched from, as ``"<segment>:<local obj_id>"``.
TRACKS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("obj_id", pa.int64(), nullable=False),
        pa.field("first_frame", pa.int64()),
        pa.field("last_frame", pa.int64()),
        pa.field("frames_present", pa.int64(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("sources", pa.list_(pa.string()), nullable=False),
    ]
)

#: One row per video. ``status`` is ``ok`` or ``failed``; ``error`` says why in
#: words a user can act on.
VIDEOS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("video", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("frames", pa.int64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("objects", pa.int64()),
        pa.field("chunks", pa.int64()),
        pa.field("started_at", pa.string()),
        pa.field("finished_at", pa.string()),
        pa.field("wall_s", pa.float64()),
    ]
)

ORIGIN_PROMPT = "prompt"
ORIGIN_DISCOVERED = "discovered"
STATUS_OK = "ok"
STATUS_FAILED = "failed"
