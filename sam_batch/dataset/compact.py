"""Compaction: a finished video's chunk parts rewritten as a few large files.

A job commits one Parquet part per chunk (``part-s<seg>-c<chunk>.parquet``), so
a crash loses at most a chunk. Readers pay per file, though: an hour at 30 fps
in chunks of 64 frames is ~1,700 parts. When a video is finished its parts are
rewritten into files of up to ``target_bytes`` (``compact-s<seg>-c<chunk>``,
named for the first chunk they hold), rows sorted by object then frame, in row
groups of about ``row_group_bytes``, so that a filter on ``obj_id`` reads only
the row groups of that object and a filter on ``video_id`` skips other videos'
files from their footers.

Commit order, and the rule that makes every moment of it readable:

1. each compacted file is written atomically; its footer metadata
   (``sam_batch.chunks``) lists the ``(segment, chunk)`` parts it holds;
2. then the parts it holds are deleted.

A part whose chunk a compacted file holds is *covered*: sam_batch's readers
(``visible_mask_files``) skip it, so a crash between 1 and 2 shows no row twice,
and the next ``compact_video`` deletes the leftovers. Engines that glob
``masks/`` themselves see exactly one copy of every row once the job has
committed ``_job.json``, since every video is compacted before it. Resume asks
``committed_chunks``: a chunk is committed if its part exists or a compacted
file holds it.

>>> import tempfile, numpy as np
>>> from sam_batch.dataset.writer import ChunkMasks, write_mask_part
>>> loc = Location(tempfile.mkdtemp())
>>> for c in range(3):
...     rows = ChunkMasks("clip", chunk_idx=c)
...     _ = rows.add(c, 0.0, (1, 2), np.ones((2, 4, 4), bool), np.ones(2, np.float32))
...     _ = write_mask_part(loc, rows, segment=0)
>>> compact_video(loc, "clip").files
['masks/clip/compact-s000-c00000.parquet']
>>> sorted(committed_chunks(loc, "clip")), visible_mask_files(loc, "clip")
([(0, 0), (0, 1), (0, 2)], ['masks/clip/compact-s000-c00000.parquet'])
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from sam_batch.dataset.layout import MaskFile, compact_file_path, masks_folder
from sam_batch.dataset.schema import MASKS_SCHEMA
from sam_batch.media.storage import Location

#: Compacted files up to this size: few enough per video-hour, small enough to
#: sort in the memory of a light task.
TARGET_FILE_BYTES = 256 << 20
#: Row groups of about this much Arrow data: the unit an engine skips or reads.
ROW_GROUP_BYTES = 32 << 20
#: Footer key listing the ``[segment, chunk]`` parts a compacted file holds.
CHUNKS_KEY = b"sam_batch.chunks"


@dataclass
class MaskFiles:
    """One video's files under ``masks/``: compacted files, what they hold, and parts."""

    compacted: dict[str, set[tuple[int, int]]] = field(default_factory=dict)
    parts: dict[tuple[int, int], str] = field(default_factory=dict)

    @property
    def covered(self) -> set[tuple[int, int]]:
        return set().union(*self.compacted.values()) if self.compacted else set()

    def visible(self) -> list[str]:
        """Compacted files and the parts none of them holds, in frame order."""
        covered = self.covered
        files = list(self.compacted) + [p for k, p in self.parts.items() if k not in covered]
        return sorted(files, key=lambda p: MaskFile.parse(p).key)


def mask_files(loc: Location, video_id: str) -> MaskFiles:
    """List a video's mask files; reads the footers of its compacted files only."""
    found = MaskFiles()
    for path in loc.list(masks_folder(video_id), ".parquet"):
        file = MaskFile.parse(path)
        if file.compacted:
            found.compacted[path] = held_chunks(loc, path)
        else:
            found.parts[file.key] = path
    return found


def held_chunks(loc: Location, path: str) -> set[tuple[int, int]]:
    """The ``(segment, chunk)`` parts a compacted file holds (from its footer)."""
    meta = pq.read_metadata(loc.path(path), filesystem=loc.fs).metadata or {}
    return {(int(s), int(c)) for s, c in json.loads(meta[CHUNKS_KEY])}


def visible_mask_files(loc: Location, video_id: str) -> list[str]:
    """The files that hold a video's rows, each row once, in frame order."""
    return mask_files(loc, video_id).visible()


def committed_chunks(loc: Location, video_id: str) -> set[tuple[int, int]]:
    """``(segment, chunk)`` of every chunk whose masks are committed under ``masks/``."""
    files = mask_files(loc, video_id)
    return files.covered | set(files.parts)


@dataclass(frozen=True)
class Compaction:
    files: list[str]  # compacted files written by this call
    parts_deleted: int


def compact_video(loc: Location, video_id: str, target_bytes: int = TARGET_FILE_BYTES,
                  row_group_bytes: int = ROW_GROUP_BYTES) -> Compaction:
    """Rewrite a finished video's uncovered parts as compacted files, then delete
    every covered part. Idempotent: re-running after a crash finishes the job."""
    files = mask_files(loc, video_id)
    covered = files.covered
    todo = sorted((k, p) for k, p in files.parts.items() if k not in covered)
    sizes = _sizes(loc, masks_folder(video_id))
    groups: list[list[tuple[tuple[int, int], str]]] = []
    size = target_bytes
    for key, path in todo:  # consecutive chunks until a file reaches the target
        if size >= target_bytes:
            groups.append([])
            size = 0
        groups[-1].append((key, path))
        size += sizes.get(path, 0)
    written = []
    for group in groups:
        (segment, chunk), _ = group[0]
        path = compact_file_path(video_id, segment, chunk)
        table = pa.concat_tables(
            pq.read_table(loc.path(p), filesystem=loc.fs, schema=MASKS_SCHEMA) for _, p in group
        ).sort_by([("obj_id", "ascending"), ("frame_idx", "ascending")])
        held = json.dumps([list(k) for k, _ in group]).encode()
        loc.write(path, _parquet_bytes(table, {CHUNKS_KEY: held}, row_group_bytes))
        written.append(path)
        covered |= {k for k, _ in group}
    deleted = 0
    for key, path in sorted(files.parts.items()):
        if key in covered:
            loc.delete(path)
            deleted += 1
    return Compaction(written, deleted)


def _parquet_bytes(table: pa.Table, metadata: dict[bytes, bytes], row_group_bytes: int) -> bytes:
    rows_per_group = max(1, int(table.num_rows * row_group_bytes / max(1, table.nbytes)))
    buf = io.BytesIO()
    pq.write_table(
        table.replace_schema_metadata(metadata), buf, compression="zstd",
        row_group_size=rows_per_group,
        sorting_columns=[pq.SortingColumn(table.schema.get_field_index("obj_id")),
                         pq.SortingColumn(table.schema.get_field_index("frame_idx"))],
    )
    return buf.getvalue()


def _sizes(loc: Location, relpath: str) -> dict[str, int]:
    """Relative path -> bytes of every file under ``relpath`` (one listing call)."""
    base = loc.path(relpath)
    if not loc.fs.exists(base):
        return {}
    root = loc.root + "/"
    return {(p[len(root):] if p.startswith(root) else p): int(info.get("size") or 0)
            for p, info in loc.fs.find(base, detail=True).items()}
