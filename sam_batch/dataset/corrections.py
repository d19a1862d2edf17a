"""Commit a correction: a video's rows from frame ``t`` on replaced, file by file.

The worker re-tracks into ``_staging/corrections/<video>/`` (one part and one
state per chunk from the chunk holding ``t``, and the state right after the
correction). Nothing visible changes until then. The commit then rewrites, for
every visible mask file holding a chunk from there on, its rows before ``t``
plus the staged rows, under the same name and footer (one atomic write per
file: readers see the old file or the new one, never both, never neither);
then moves the states; the caller rewrites the tracks table and ``_job.json``,
and removes the staging area last. Rewriting keeps the old rows before ``t``
from the file being replaced, so running the commit again after a crash gives
the same files. A video whose rows from ``t`` on lie in one compacted file (any
video with under ``TARGET_FILE_BYTES`` of masks) switches in one write; a
longer one switches file by file, and a crash between two leaves it readable
but mixed until the same command is run again.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sam_batch.dataset.compact import CHUNKS_KEY, ROW_GROUP_BYTES, mask_files
from sam_batch.dataset.layout import STAGING_DIR, mask_part_path, state_path, states_folder
from sam_batch.dataset.schema import MASKS_SCHEMA
from sam_batch.dataset.writer import table_bytes
from sam_batch.media.storage import Location, safe_name

#: Written before a correction changes anything, removed after it is committed.
PENDING_FILE = "_correction.json"
CORRECTIONS_DIR = f"{STAGING_DIR}/corrections"


def staging_folder(video_id: str) -> str:
    return f"{CORRECTIONS_DIR}/{safe_name(video_id)}"


def staged_part(video_id: str, chunk_idx: int) -> str:
    return f"{staging_folder(video_id)}/part-c{chunk_idx:05d}.parquet"


def staged_state(video_id: str, chunk_idx: int | None, frame: int | None = None) -> str:
    """The staged state after chunk ``chunk_idx``, or (None) right after the correction."""
    if chunk_idx is None:
        return f"{staging_folder(video_id)}/{correction_state_name(frame or 0)}"
    return f"{staging_folder(video_id)}/s000-c{chunk_idx:05d}.state"


def correction_state_name(frame: int) -> str:
    return f"fix-f{frame:08d}.state"


def correction_state_path(video_id: str, frame: int) -> str:
    """The state right after a correction on ``frame`` (it continues at ``frame``)."""
    return f"{states_folder(video_id)}/{correction_state_name(frame)}"


def correction_state_frame(path: str) -> int | None:
    name = path.rsplit("/", 1)[-1]
    if name.startswith("fix-f") and name.endswith(".state"):
        return int(name[5:-6])
    return None


def staged_complete(loc: Location, video_id: str, chunks: list[int], frame: int) -> bool:
    have = set(loc.list(staging_folder(video_id)))
    return (staged_state(video_id, None, frame) in have
            and all(staged_part(video_id, c) in have and staged_state(video_id, c) in have
                    for c in chunks))


def switch_masks(loc: Location, video_id: str, frame: int, chunks: list[int]) -> int:
    """Replace the video's rows from ``frame`` on by the staged ones; returns files written."""
    first = min(chunks)
    files = mask_files(loc, video_id)
    placed: set[int] = set()
    written = 0
    for path, held in sorted(files.compacted.items()):
        mine = sorted(c for _, c in held if c >= first)
        if not mine:
            continue
        table = _merge(loc, path, video_id, frame, mine)
        loc.write(path, _compacted_bytes(table, sorted(held)))
        placed.update(mine)
        written += 1
    covered = files.covered
    for key, path in sorted(files.parts.items()):
        c = key[1]
        if key in covered or c < first:
            continue
        loc.write(path, table_bytes(_merge(loc, path, video_id, frame, [c])
                                    .sort_by([("frame_idx", "ascending"),
                                              ("obj_id", "ascending")])))
        placed.add(c)
        written += 1
    for c in sorted(set(chunks) - placed):  # a chunk no file held (an empty tail)
        loc.write(mask_part_path(video_id, 0, c), loc.read(staged_part(video_id, c)))
        written += 1
    return written


def move_states(loc: Location, video_id: str, frame: int, chunks: list[int],
                keep: list[int]) -> None:
    """The staged states into place: the correction's own, and those of ``keep``."""
    loc.write(correction_state_path(video_id, frame),
              loc.read(staged_state(video_id, None, frame)))
    for c in chunks:
        target = state_path(video_id, 0, c)
        if c in keep:
            loc.write(target, loc.read(staged_state(video_id, c)))
        else:
            loc.delete(target)  # an older pass's state, no longer true from here on


def _merge(loc: Location, path: str, video_id: str, frame: int, chunks: list[int]) -> pa.Table:
    old = pq.read_table(loc.path(path), filesystem=loc.fs, schema=MASKS_SCHEMA)
    kept = old.filter(pc.less(old["frame_idx"], frame))
    new = [pq.read_table(loc.path(staged_part(video_id, c)), filesystem=loc.fs,
                         schema=MASKS_SCHEMA) for c in chunks]
    return pa.concat_tables([kept, *new])


def _compacted_bytes(table: pa.Table, held: list[tuple[int, int]]) -> bytes:
    """As ``compact_video`` writes them: sorted by object then frame, same footer."""
    table = table.sort_by([("obj_id", "ascending"), ("frame_idx", "ascending")])
    rows_per_group = max(1, int(table.num_rows * ROW_GROUP_BYTES / max(1, table.nbytes)))
    meta = {CHUNKS_KEY: json.dumps([list(k) for k in held]).encode()}
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf, compression="zstd",
                   row_group_size=rows_per_group,
                   sorting_columns=[pq.SortingColumn(table.schema.get_field_index("obj_id")),
                                    pq.SortingColumn(table.schema.get_field_index("frame_idx"))])
    return buf.getvalue()
