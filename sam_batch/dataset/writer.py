"""Write a dataset: mask parts per chunk, then videos, tracks, and ``_job.json`` last.

Writing has a life cycle, as in Ray Data's datasinks: each chunk's part is
committed on its own (atomically, under a deterministic name, so a retried or
resumed chunk replaces its part instead of adding rows); the per-video tables
are committed when a video ends; ``_job.json`` is the final commit and its
presence means the job completed. The value that flows from tracker to writer
is ``ChunkMasks``: the encoded rows of one chunk plus per-object statistics the
driver needs for the tracks table without reading masks back.

>>> import tempfile, numpy as np
>>> from sam_batch.media.storage import Location
>>> rows = ChunkMasks("clip", chunk_idx=0)
>>> encoded = rows.add(frame_idx=0, time_s=0.0, obj_ids=(1,), masks=np.ones((1, 4, 4), bool),
...                    scores=np.array([0.9], np.float32))
>>> [m.area for m in encoded]
[16]
>>> loc = Location(tempfile.mkdtemp())
>>> _ = write_mask_part(loc, rows, segment=0); loc.list("masks")
['masks/clip/part-s000-c00000.parquet']
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sam_batch.dataset import rle
from sam_batch.dataset.layout import JOB_FILE, mask_part_path, tracks_path, video_row_path
from sam_batch.dataset.schema import MASKS_SCHEMA, TRACKS_SCHEMA, VIDEOS_SCHEMA
from sam_batch.media.storage import Location


@dataclass
class ObjectStats:
    """What the tracks table needs of one object in one chunk."""

    first_frame: int | None = None  # first frame with a non-empty mask
    last_frame: int | None = None
    frames_present: int = 0

    def add(self, frame_idx: int, area: int) -> None:
        if area > 0:
            if self.first_frame is None:
                self.first_frame = frame_idx
            self.last_frame = frame_idx
            self.frames_present += 1

    def merge(self, other: ObjectStats) -> ObjectStats:
        firsts = [f for f in (self.first_frame, other.first_frame) if f is not None]
        lasts = [f for f in (self.last_frame, other.last_frame) if f is not None]
        return ObjectStats(
            min(firsts, default=None), max(lasts, default=None),
            self.frames_present + other.frames_present,
        )


@dataclass
class ChunkMasks:
    """Encoded mask rows of one chunk of one video, in frame then object order."""

    video_id: str
    chunk_idx: int
    columns: dict[str, list] = field(default_factory=lambda: {f.name: [] for f in MASKS_SCHEMA})
    stats: dict[int, ObjectStats] = field(default_factory=dict)

    def add(self, frame_idx: int, time_s: float, obj_ids: Sequence[int], masks: np.ndarray,
            scores: np.ndarray) -> list[rle.EncodedMask]:
        """Encode one frame's masks (``[n, H, W]`` bool) as rows; returns the encodings."""
        encoded = [rle.encode(mask) for mask in masks]
        self.add_encoded(frame_idx, time_s, obj_ids, encoded, scores)
        return encoded

    def add_encoded(self, frame_idx: int, time_s: float, obj_ids: Sequence[int],
                    encoded: Sequence[rle.EncodedMask], scores: np.ndarray) -> None:
        """One frame's rows from masks already encoded (off the model's thread)."""
        c = self.columns
        for obj_id, enc, score in zip(obj_ids, encoded, scores, strict=True):
            c["video_id"].append(self.video_id)
            c["frame_idx"].append(frame_idx)
            c["obj_id"].append(int(obj_id))
            c["time_s"].append(time_s)
            c["height"].append(enc.height)
            c["width"].append(enc.width)
            c["rle"].append(enc.rle)
            c["bbox"].append(list(enc.bbox))
            c["area"].append(enc.area)
            c["score"].append(float(score))
            c["chunk_idx"].append(self.chunk_idx)
            self.stats.setdefault(int(obj_id), ObjectStats()).add(frame_idx, enc.area)

    @property
    def num_rows(self) -> int:
        return len(self.columns["frame_idx"])

    def to_table(self) -> pa.Table:
        return pa.table(self.columns, schema=MASKS_SCHEMA)


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_mask_part(loc: Location, rows: ChunkMasks, segment: int, staged: bool = False) -> str:
    relpath = mask_part_path(rows.video_id, segment, rows.chunk_idx, staged)
    loc.write(relpath, table_bytes(rows.to_table()))
    return relpath


def write_video_row(loc: Location, row: dict, duplicate_row: int | None = None) -> None:
    """Commit a video's ``videos/`` row (one part per video: re-runs replace it).

    ``duplicate_row``: the manifest row, where one id stands for several rows
    (duplicates), so that each row's failure is kept.
    """
    table = pa.Table.from_pylist([{f.name: row.get(f.name) for f in VIDEOS_SCHEMA}],
                                 schema=VIDEOS_SCHEMA)
    loc.write(video_row_path(row["video_id"], duplicate_row), table_bytes(table))


def write_tracks(loc: Location, video_id: str, rows: Iterable[dict]) -> None:
    table = pa.Table.from_pylist(
        [{f.name: r.get(f.name) for f in TRACKS_SCHEMA} for r in rows], schema=TRACKS_SCHEMA
    )
    loc.write(tracks_path(video_id), table_bytes(table))


def write_job_file(loc: Location, job: dict) -> None:
    """The final commit: its presence means the job completed."""
    loc.write(JOB_FILE, json.dumps(job, indent=2, sort_keys=True).encode())
