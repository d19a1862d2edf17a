"""Read a sam_batch dataset, one video at a time.

Exports, evaluation and ``sam-batch inspect`` read through here. Masks are
streamed part by part (a part is one chunk, in frame order), so a reader never
holds more than one chunk's rows of one video, however long the video.

>>> ds = Dataset("s3://bucket/dataset", {"anon": True})      # doctest: +SKIP
>>> for frame_idx, objects in ds.iter_frames("clip"):        # doctest: +SKIP
...     mask = objects[1].mask()                              # [H, W] bool of object 1
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sam_batch.dataset import rle
from sam_batch.dataset.compact import visible_mask_files
from sam_batch.dataset.footprint import footprint
from sam_batch.dataset.layout import (
    JOB_FILE,
    MASKS_DIR,
    TRACKS_DIR,
    VIDEOS_DIR,
    MaskFile,
    tracks_path,
    video_row_path,
)
from sam_batch.dataset.schema import MASKS_SCHEMA, TRACKS_SCHEMA, VIDEOS_SCHEMA
from sam_batch.errors import SamBatchError
from sam_batch.media.storage import Location, safe_name


@dataclass(frozen=True)
class MaskRow:
    """One object's mask on one frame, still encoded."""

    obj_id: int
    rle: str
    height: int
    width: int
    bbox: tuple[float, float, float, float]
    area: int
    score: float
    time_s: float

    def mask(self) -> np.ndarray:
        return rle.decode(self.rle, self.height, self.width)


class Dataset:
    """A dataset directory written by ``sam-batch run`` (complete or in progress)."""

    def __init__(self, url: str, storage_options: dict | None = None):
        self.location = Location(url, storage_options)
        if not self.location.exists(""):
            raise SamBatchError(f"no dataset at {url}")

    @property
    def url(self) -> str:
        return self.location.url

    def job(self) -> dict | None:
        """``_job.json``, or None while the job has not completed."""
        if not self.location.exists(JOB_FILE):
            return None
        return json.loads(self.location.read(JOB_FILE))

    def _table(self, directory: str, schema: pa.Schema) -> pa.Table:
        files = self.location.list(directory, ".parquet")
        if not files:
            return schema.empty_table()
        tables = [
            pq.read_table(self.location.path(f), filesystem=self.location.fs, schema=schema)
            for f in files
        ]
        return pa.concat_tables(tables)

    def videos(self) -> pa.Table:
        return self._table(VIDEOS_DIR, VIDEOS_SCHEMA)

    def video_ids(self, status: str | None = "ok") -> list[str]:
        rows = self.videos().to_pylist()
        return [r["video_id"] for r in rows if status is None or r["status"] == status]

    def video(self, video_id: str) -> dict:
        path = video_row_path(video_id)
        if not self.location.exists(path):
            raise SamBatchError(f"video {video_id!r} is not in the dataset {self.url}")
        table = pq.read_table(self.location.path(path), filesystem=self.location.fs,
                              schema=VIDEOS_SCHEMA)
        return table.to_pylist()[0]

    def tracks(self, video_id: str | None = None) -> pa.Table:
        if video_id is None:
            return self._table(TRACKS_DIR, TRACKS_SCHEMA)
        path = tracks_path(video_id)
        if not self.location.exists(path):
            return TRACKS_SCHEMA.empty_table()
        return pq.read_table(self.location.path(path), filesystem=self.location.fs,
                             schema=TRACKS_SCHEMA)

    def mask_parts(self, video_id: str) -> list[str]:
        """The files holding a video's rows, each row once, in frame order: chunk
        parts, or the compacted files that replace them (``dataset.compact``)."""
        return visible_mask_files(self.location, video_id)

    def mask_files(self) -> list[str]:
        """Every video's mask files (as ``mask_parts``)."""
        videos = {MaskFile.parse(f).video_id for f in self.location.list(MASKS_DIR, ".parquet")}
        return [f for video_id in sorted(videos, key=safe_name)
                for f in visible_mask_files(self.location, video_id)]

    def masks(self, video_id: str | None = None, columns: list[str] | None = None) -> pa.Table:
        """All mask rows (of one video): for small datasets and tests."""
        files = self.mask_files() if video_id is None else self.mask_parts(video_id)
        parts = [self._read_part(p) for p in files]
        table = pa.concat_tables(parts) if parts else MASKS_SCHEMA.empty_table()
        return table.select(columns) if columns else table

    def _read_part(self, relpath: str) -> pa.Table:
        return pq.read_table(self.location.path(relpath), filesystem=self.location.fs,
                             schema=MASKS_SCHEMA)

    def iter_frames(self, video_id: str) -> Iterator[tuple[int, dict[int, MaskRow]]]:
        """Yield ``(frame_idx, {obj_id: MaskRow})`` in frame order, one part in memory."""
        for part in self.mask_parts(video_id):
            table = self._read_part(part).sort_by([("frame_idx", "ascending"),
                                                   ("obj_id", "ascending")])
            frame: int | None = None
            objects: dict[int, MaskRow] = {}
            for r in table.to_pylist():
                if r["frame_idx"] != frame:
                    if frame is not None:
                        yield frame, objects
                    frame, objects = r["frame_idx"], {}
                objects[r["obj_id"]] = MaskRow(
                    obj_id=r["obj_id"], rle=r["rle"], height=r["height"], width=r["width"],
                    bbox=tuple(r["bbox"]), area=r["area"], score=r["score"], time_s=r["time_s"],
                )
            if frame is not None:
                yield frame, objects

    def summary(self) -> dict:
        """Counts for ``sam-batch inspect``: complete or not, videos, frames, objects."""
        videos = self.videos().to_pylist()
        tracks = self.tracks()
        mask_files = self.mask_files()
        rows = sum(
            pq.ParquetFile(self.location.path(f), filesystem=self.location.fs).metadata.num_rows
            for f in mask_files
        )
        job = self.job()
        return {
            "url": self.url,
            "complete": job is not None,
            "videos_ok": sum(v["status"] == "ok" for v in videos),
            "videos_failed": sum(v["status"] == "failed" for v in videos),
            "frames": sum(v["frames"] or 0 for v in videos if v["status"] == "ok"),
            "tracks": tracks.num_rows,
            "mask_parts": len(mask_files),
            "mask_rows": rows,
            "footprint": footprint(self.location, videos),
            "failed": [
                {"video_id": v["video_id"], "error": v["error"]}
                for v in videos if v["status"] == "failed"
            ],
            "job": None if job is None else {
                k: job.get(k) for k in ("started_at", "finished_at", "model", "counts")
            },
        }
