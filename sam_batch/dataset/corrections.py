"""Commit a correction: a video's rows from frame ``t`` on replaced, file by file.

The worker re-tracks into ``_staging/corrections/<video>/``: one part and one
state per re-tracked chunk of the segment holding ``t``, the state right after
the correction, the parts of the *tail* (objects new to the video tracked on
past the segment's end), and last ``done.json`` (which objects it re-tracked).
Nothing visible changes until then. The commit then rewrites every visible mask
file that holds a changed row: its rows minus the replaced ones, plus the staged
rows that belong to it, under the same name and footer (one atomic write per
file: readers see the old file or the new one, never both, never neither); then
moves the states; the caller rewrites the tracks table and ``_job.json``, and
removes the staging area last.

A replaced row is one of an object the worker re-tracked on a frame in
``[t, owned_end)`` (the frames the segment owns from ``t`` on), or one of a tail
object from ``t`` on. A staged row goes to the file holding the chunk that owns
its frame (``owners``), so files stay in frame order. The rule reads only the
staging area and the files, so running the commit again after a crash gives the
same files. A video whose rows from ``t`` on lie in one compacted file (any
video with under ``TARGET_FILE_BYTES`` of masks) switches in one write; a
longer one switches file by file, and a crash between two leaves it readable
but mixed until the same command is run again.
"""

from __future__ import annotations

import bisect
import io
import json
from collections.abc import Sequence

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
#: ``(first frame, end frame, segment, chunk_idx)``: the chunk whose file holds those frames.
Owner = tuple[int, int, int, int]


def staging_folder(video_id: str) -> str:
    return f"{CORRECTIONS_DIR}/{safe_name(video_id)}"


def staged_part(video_id: str, chunk_idx: int) -> str:
    return f"{staging_folder(video_id)}/part-c{chunk_idx:05d}.parquet"


def staged_tail_part(video_id: str, start: int) -> str:
    """Rows of the tail objects on frames ``[start, ...)``, past the re-tracked segment."""
    return f"{staging_folder(video_id)}/tail-f{start:08d}.parquet"


def staged_done(video_id: str) -> str:
    """Written last by the worker: ``{"retracked": [...], "tail": [...]}`` object ids."""
    return f"{staging_folder(video_id)}/done.json"


def staged_state(video_id: str, chunk_idx: int | None, frame: int | None = None,
                 segment: int = 0) -> str:
    """The staged state after chunk ``chunk_idx``, or (None) right after the correction."""
    if chunk_idx is None:
        return f"{staging_folder(video_id)}/{correction_state_name(frame or 0, segment)}"
    return f"{staging_folder(video_id)}/s{segment:03d}-c{chunk_idx:05d}.state"


def correction_state_name(frame: int, segment: int = 0) -> str:
    return f"fix-f{frame:08d}.state" if segment == 0 else f"fix-s{segment:03d}-f{frame:08d}.state"


def correction_state_path(video_id: str, frame: int, segment: int = 0) -> str:
    """The state right after a correction on ``frame`` (it continues at ``frame``)."""
    return f"{states_folder(video_id)}/{correction_state_name(frame, segment)}"


def correction_state_key(path: str) -> tuple[int, int] | None:
    """``(segment, frame)`` of a correction's state, None for any other file.

    >>> correction_state_key("_states/v/fix-f00000012.state")
    (0, 12)
    >>> correction_state_key("_states/v/fix-s002-f00000040.state"), correction_state_key("x")
    ((2, 40), None)
    """
    name = path.rsplit("/", 1)[-1]
    if not (name.startswith("fix-") and name.endswith(".state")):
        return None
    segment = 0
    rest = name[4:-6]
    if rest.startswith("s"):
        segment, rest = int(rest[1:4]), rest[5:]
    return segment, int(rest[1:])


def staged_complete(loc: Location, video_id: str) -> bool:
    return loc.exists(staged_done(video_id))


def switch_masks(loc: Location, video_id: str, frame: int, owned_end: int,
                 owners: Sequence[Owner]) -> int:
    """Replace the re-tracked rows by the staged ones (module docstring); returns files
    written. ``owners`` cover every frame from ``frame`` on, in order."""
    done = json.loads(loc.read(staged_done(video_id)))
    staged = _staged_rows(loc, video_id, frame, owned_end, done["tail"], owners)
    replaced = _replaced(frame, owned_end, done["retracked"], done["tail"])
    files = mask_files(loc, video_id)
    placed: set[tuple[int, int]] = set()
    written = 0
    covered = files.covered
    targets = [(path, sorted(held), True) for path, held in sorted(files.compacted.items())]
    targets += [(path, [key], False) for key, path in sorted(files.parts.items())
                if key not in covered]
    first = owners[0][3]  # chunks are numbered in frame order: none before it changes
    for path, held, compacted in targets:
        if max(c for _, c in held) < first:
            continue
        old = pq.read_table(loc.path(path), filesystem=loc.fs, schema=MASKS_SCHEMA)
        mine = [staged[k] for k in held if k in staged]
        drop = replaced(old)
        if not mine and not pc.any(drop).as_py():
            continue
        table = pa.concat_tables([old.filter(pc.invert(drop)), *mine])
        loc.write(path, _compacted_bytes(table, held) if compacted else table_bytes(
            table.sort_by([("frame_idx", "ascending"), ("obj_id", "ascending")])))
        placed.update(held)
        written += 1
    for key in sorted(set(staged) - placed):  # a chunk no file held (an empty tail)
        table = staged[key].sort_by([("frame_idx", "ascending"), ("obj_id", "ascending")])
        loc.write(mask_part_path(video_id, *key), table_bytes(table))
        written += 1
    return written


def _staged_rows(loc: Location, video_id: str, frame: int, owned_end: int, tail: list[int],
                 owners: Sequence[Owner]) -> dict[tuple[int, int], pa.Table]:
    """The staged rows that replace others, by the (segment, chunk) whose file takes them."""
    paths = sorted(loc.list(staging_folder(video_id), ".parquet"))
    tables = [pq.read_table(loc.path(p), filesystem=loc.fs, schema=MASKS_SCHEMA) for p in paths]
    rows = pa.concat_tables(tables) if tables else MASKS_SCHEMA.empty_table()
    f = rows["frame_idx"]
    keep = pc.and_(pc.greater_equal(f, frame),
                   pc.or_(pc.less(f, owned_end),
                          pc.is_in(rows["obj_id"], pa.array(tail, pa.int64()))))
    rows = rows.filter(keep)
    starts = [o[0] for o in owners]
    which = [bisect.bisect_right(starts, x) - 1 for x in rows["frame_idx"].to_pylist()]
    out: dict[tuple[int, int], pa.Table] = {}
    for i, (lo, hi, segment, chunk) in enumerate(owners):
        sel = pa.array([w == i for w in which], pa.bool_())
        part = rows.filter(sel)
        if part.num_rows:
            if pc.max(part["frame_idx"]).as_py() >= hi or pc.min(part["frame_idx"]).as_py() < lo:
                raise ValueError(f"{video_id}: owners leave a gap around frames [{lo}, {hi})")
            column = pa.array([chunk] * part.num_rows, part.schema.field("chunk_idx").type)
            out[segment, chunk] = part.set_column(
                part.schema.get_field_index("chunk_idx"), part.schema.field("chunk_idx"), column)
    return out


def _replaced(frame: int, owned_end: int, retracked: list[int], tail: list[int]):
    def mask(table: pa.Table) -> pa.ChunkedArray:
        f, obj = table["frame_idx"], table["obj_id"]
        ours = pc.and_(pc.and_(pc.greater_equal(f, frame), pc.less(f, owned_end)),
                       pc.is_in(obj, pa.array(retracked, pa.int64())))
        tails = pc.and_(pc.greater_equal(f, frame), pc.is_in(obj, pa.array(tail, pa.int64())))
        return pc.or_(ours, tails)
    return mask


def move_states(loc: Location, video_id: str, frame: int, segment: int, chunks: list[int],
                keep: list[int]) -> None:
    """The staged states into place: the correction's own, and those of ``keep``."""
    loc.write(correction_state_path(video_id, frame, segment),
              loc.read(staged_state(video_id, None, frame, segment)))
    for c in chunks:
        target = state_path(video_id, segment, c)
        if c in keep:
            loc.write(target, loc.read(staged_state(video_id, c, segment=segment)))
        else:
            loc.delete(target)  # an older pass's state, no longer true from here on


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
