"""The check that a restructuring changed no output (``bench/same_output.py``) can fail.

Two datasets of the same masks, written by the real writer at different
folders and times, must compare identical; one byte changed in a mask part or
a state, a changed field, a missing file must each be named as the difference.
"""

from __future__ import annotations

import doctest
import importlib.util
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasetkit import clip_video

from sam_batch.dataset.writer import write_job_file, write_video_row
from sam_batch.media.storage import Location
from sam_batch.synthetic import generate

_SPEC = importlib.util.spec_from_file_location(
    "output_diff", Path(__file__).resolve().parents[1] / "bench" / "output_diff.py")
output_diff = sys.modules["output_diff"] = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(output_diff)
compare_outputs = output_diff.compare_outputs


def build(root: Path, hour: int) -> Path:
    """A one-video dataset (mp4 beside it, so its path differs per root) written at ``hour``."""
    clip_video(root, "clip", generate(3, width=32, height=24, num_frames=6), chunk_frames=3)
    loc = Location(str(root))
    started, finished = f"2026-01-01T{hour:02d}:00:00+00:00", f"2026-01-01T{hour:02d}:00:07+00:00"
    write_video_row(loc, {
        "video_id": "clip", "video": str(root.parent / f"{root.name}-sources" / "clip.mp4"),
        "status": "ok", "frames": 6, "fps": 24.0, "width": 32, "height": 24, "objects": 3,
        "chunks": 2, "started_at": started, "finished_at": finished, "wall_s": 7.0 + hour,
    })
    loc.write("_states/clip/s000-c00001.state", bytes(range(256)) * 4)
    write_job_file(loc, {"config": {"output": str(root)}, "counts": {"videos": 1},
                         "started_at": started, "finished_at": finished,
                         "sam_batch_version": f"0.{hour}.0"})
    return root


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    return build(tmp_path / "a" / "ds", 10), build(tmp_path / "b" / "ds", 11)


def test_same_masks_at_other_times_and_folders_are_identical(pair):
    result = compare_outputs(*pair)
    assert result.identical, result.table()
    why = {f.path: f.why for f in result.files}
    assert why["videos/clip.parquet"] == "ignored: started_at, finished_at, wall_s, output path"
    assert why["_job.json"] == "ignored: finished_at, sam_batch_version, started_at"
    assert why["masks/clip/part-s000-c00000.parquet"] == ""  # equal bytes
    assert len(result.files) == 6  # 2 parts, tracks, videos, a state, _job.json


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("rel", ["masks/clip/part-s000-c00001.parquet",
                                 "_states/clip/s000-c00001.state", "tracks/clip.parquet"])
@pytest.mark.parametrize("where", [0.5, -9])  # inside the data; inside the Parquet footer
def test_one_byte_changed_is_a_difference(pair, rel, where):
    before, after = pair
    size = (after / rel).stat().st_size
    _flip(after / rel, int(size * where) if where > 0 else size + where)
    result = compare_outputs(before, after)
    assert not result.identical
    assert [f.path for f in result.differing] == [rel]
    assert "differ" in result.differing[0].why


def test_a_changed_field_a_changed_row_and_a_missing_file_are_named(pair):
    before, after = pair
    job = json.loads((after / "_job.json").read_text())
    job["counts"]["videos"] = 2
    (after / "_job.json").write_text(json.dumps(job))
    loc = Location(str(after))
    write_video_row(loc, {"video_id": "clip", "video": "elsewhere.mp4", "status": "ok"})
    (after / "tracks" / "clip.parquet").unlink()
    why = {f.path: f.why for f in compare_outputs(before, after).differing}
    assert why == {"_job.json": "counts.videos: 1 vs 2",
                   "videos/clip.parquet": "column video differs",
                   "tracks/clip.parquet": "only in before"}


def test_blanked_times_do_not_hide_a_file_written_otherwise(pair):
    """``videos/`` rows differ in their times anyway; another compression must still show."""
    before, after = pair
    path = after / "videos" / "clip.parquet"
    pq.write_table(pq.read_table(path), path, compression="snappy")
    [diff] = compare_outputs(before, after).differing
    assert (diff.path, diff.why.split(" (")[0]) == ("videos/clip.parquet", "written otherwise")


def test_docstring_example_runs():
    assert doctest.testmod(output_diff).failed == 0
