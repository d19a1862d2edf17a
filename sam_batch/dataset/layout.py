"""The dataset on disk: every path a job writes, and the way back from a mask file's name.

One module names them all, so the writer, the workers, the driver, finishing
and compaction cannot drift apart. A dataset directory holds::

    masks/<video>/part-s<seg>-c<chunk>.parquet      one chunk's rows (committed)
    masks/<video>/compact-s<seg>-c<chunk>.parquet   compacted parts, from that chunk on
    tracks/<video>.parquet                          one video's tracks table
    videos/<video>.parquet                          one video's row (status, size, ...)
    _job.json                                       written last: the job completed
    _run.json                                       the job's settings, to resume it
    _staging/masks/<video>/part-...parquet          segment-local parts, before stitching
    _states/<video>/init[-s<seg>].state             a segment's state before its chunks
    _states/<video>/s<seg>-c<chunk>.state           the state after a chunk
    _probe/<video>.json                             the video's probe, read back on resume

``<video>`` is ``safe_name(video_id)``, which is reversible. A mask file's
name parses back into a ``MaskFile``:

>>> f = MaskFile.parse("_staging/masks/cam%201/part-s001-c00012.parquet")
>>> f.video_id, f.segment, f.chunk_idx, f.staged, f.compacted
('cam 1', 1, 12, True, False)
>>> f.committed().path
'masks/cam%201/part-s001-c00012.parquet'
>>> state_path("cam 1", 1, 12), init_state_path("cam 1", 1)
('_states/cam%201/s001-c00012.state', '_states/cam%201/init-s001.state')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import unquote

from sam_batch.media.storage import safe_name

MASKS_DIR = "masks"
TRACKS_DIR = "tracks"
VIDEOS_DIR = "videos"
JOB_FILE = "_job.json"
#: The job's settings, written first: a later run on the same output resumes it.
RUN_FILE = "_run.json"
#: Parts of videos still to be stitched: rewritten under ``masks/`` with global ids.
STAGING_DIR = "_staging"
STATES_DIR = "_states"
#: Where a job keeps its probes (a resumed job reads them back instead of probing).
PROBE_DIR = "_probe"
#: Everything a job writes at the top of its output (``--overwrite`` removes them).
JOB_PATHS = (MASKS_DIR, TRACKS_DIR, VIDEOS_DIR, STATES_DIR, STAGING_DIR, PROBE_DIR, JOB_FILE,
             RUN_FILE)

PART_SUFFIX = ".parquet"
STATE_SUFFIX = ".state"
_PART = "part-"
_COMPACT = "compact-"
_MASK_NAME = re.compile(r"^(part|compact)-s(\d{3})-c(\d{5})\.parquet$")


@dataclass(frozen=True)
class MaskFile:
    """A file of mask rows, by what it holds: a chunk's part, or a compacted file
    (``chunk_idx`` is then the first chunk it holds)."""

    video_id: str
    segment: int
    chunk_idx: int
    staged: bool = False
    compacted: bool = False

    @property
    def key(self) -> tuple[int, int]:
        """``(segment, chunk_idx)``: the order of a video's files, frame by frame."""
        return self.segment, self.chunk_idx

    @property
    def path(self) -> str:
        prefix = _COMPACT if self.compacted else _PART
        name = f"{prefix}s{self.segment:03d}-c{self.chunk_idx:05d}{PART_SUFFIX}"
        return f"{masks_folder(self.video_id, self.staged)}/{name}"

    def committed(self) -> MaskFile:
        """The same chunk's file under ``masks/`` (where a staged part goes once stitched)."""
        return replace(self, staged=False)

    @classmethod
    def parse(cls, path: str) -> MaskFile:
        """The file a path names; ``ValueError`` for anything else."""
        parts = path.split("/")
        m = _MASK_NAME.match(parts[-1])
        if m is None or len(parts) < 3 or parts[-3] != MASKS_DIR or not parts[-2]:
            raise ValueError(f"not a sam_batch mask file: {path}")
        staged = len(parts) >= 4 and parts[-4] == STAGING_DIR
        return cls(unquote(parts[-2]), int(m.group(2)), int(m.group(3)), staged,
                   m.group(1) == "compact")


def masks_folder(video_id: str, staged: bool = False) -> str:
    """The folder of one video's mask files (``staged``: its segment-local parts)."""
    top = f"{STAGING_DIR}/{MASKS_DIR}" if staged else MASKS_DIR
    return f"{top}/{safe_name(video_id)}"


def mask_part_path(video_id: str, segment: int, chunk_idx: int, staged: bool = False) -> str:
    return MaskFile(video_id, segment, chunk_idx, staged).path


def compact_file_path(video_id: str, segment: int, chunk_idx: int) -> str:
    return MaskFile(video_id, segment, chunk_idx, compacted=True).path


def states_folder(video_id: str) -> str:
    return f"{STATES_DIR}/{safe_name(video_id)}"


def state_path(video_id: str, segment: int, chunk_idx: int) -> str:
    """Checkpoint of the state after chunk ``chunk_idx`` (the next chunk's input)."""
    return f"{states_folder(video_id)}/s{segment:03d}-c{chunk_idx:05d}{STATE_SUFFIX}"


def init_state_path(video_id: str, segment: int = 0) -> str:
    """A segment's state before its first chunk (its prompts or seeds encoded)."""
    name = "init" if segment == 0 else f"init-s{segment:03d}"
    return f"{states_folder(video_id)}/{name}{STATE_SUFFIX}"


def tracks_path(video_id: str) -> str:
    return f"{TRACKS_DIR}/{safe_name(video_id)}{PART_SUFFIX}"


def video_row_path(video_id: str, duplicate_row: int | None = None) -> str:
    """A video's ``videos/`` row; a manifest row that repeats an id gets its own
    (``duplicate_row``), so that each row's failure is kept."""
    name = safe_name(video_id) + ("" if duplicate_row is None else f"~row{duplicate_row}")
    return f"{VIDEOS_DIR}/{name}{PART_SUFFIX}"


def probe_path(video_id: str) -> str:
    return f"{PROBE_DIR}/{safe_name(video_id)}.json"


def video_paths(video_id: str) -> tuple[str, ...]:
    """What a video's tracking wrote, to start it over (its probe and row stay)."""
    return (masks_folder(video_id), masks_folder(video_id, staged=True), states_folder(video_id),
            tracks_path(video_id))
