"""A finished video's parts become a few compacted files, and every reader copes.

The promises of ``sam_batch.dataset.compact``: a handful of files per video
whatever the chunk size, rows sorted by object then frame in row groups an
engine can skip, each row visible once at every moment of a compaction (a
crash between its steps included), and the next compaction finishes the work.
Then the engines people use read the dataset with filters pushed down:
pyarrow.dataset, DuckDB and Ray Data, and pycocotools decodes what they read.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from datasetkit import finish, write_video
from pycocotools import mask as mask_utils

from sam_batch.dataset.compact import (
    committed_chunks,
    compact_video,
    mask_files,
    visible_mask_files,
)
from sam_batch.dataset.reader import Dataset
from sam_batch.dataset.retention import KeepStates
from sam_batch.errors import ConfigError
from sam_batch.media.storage import Location
from sam_batch.synthetic import generate

FRAMES = 48


def masks_of(seed: int) -> dict[int, np.ndarray]:
    return generate(seed, width=48, height=32, num_frames=FRAMES, num_objects=3).masks


def rows(ds: Dataset, video_id: str) -> list[tuple]:
    table = ds.masks(video_id)
    return sorted(zip(*(table[c].to_pylist() for c in ("frame_idx", "obj_id", "rle", "area")),
                      strict=True))


@pytest.fixture
def video(tmp_path: Path) -> tuple[Path, list[tuple]]:
    write_video(tmp_path, "v", masks_of(1), chunk_frames=4)
    return tmp_path, rows(Dataset(str(tmp_path)), "v")


@pytest.mark.parametrize("chunk_frames", [1, 4, 16])
def test_a_video_compacts_to_one_file_whatever_the_chunk_size(tmp_path, chunk_frames):
    write_video(tmp_path, "v", masks_of(1), chunk_frames=chunk_frames)
    before = rows(Dataset(str(tmp_path)), "v")
    done = compact_video(Location(str(tmp_path)), "v")
    assert done.files == ["masks/v/compact-s000-c00000.parquet"]
    assert done.parts_deleted == -(-FRAMES // chunk_frames)
    assert [p.name for p in (tmp_path / "masks" / "v").iterdir()] == [
        "compact-s000-c00000.parquet"]
    assert rows(Dataset(str(tmp_path)), "v") == before


def test_compacted_rows_are_sorted_by_object_then_frame_in_row_groups(video):
    root, _ = video
    compact_video(Location(str(root)), "v", row_group_bytes=2 << 10)
    f = pq.ParquetFile(root / "masks" / "v" / "compact-s000-c00000.parquet")
    table = f.read()
    keys = list(zip(table["obj_id"].to_pylist(), table["frame_idx"].to_pylist(), strict=True))
    assert keys == sorted(keys)
    assert f.metadata.num_row_groups > 3
    # Each row group holds a range of objects an engine can test from its statistics.
    stats = [f.metadata.row_group(i).column(2).statistics for i in range(f.num_row_groups)]
    assert all(s.has_min_max for s in stats)
    assert [s.min for s in stats] == sorted(s.min for s in stats)


def test_large_videos_compact_to_files_near_the_target_size(video):
    root, before = video
    total = sum(p.stat().st_size for p in (root / "masks" / "v").iterdir())
    done = compact_video(Location(str(root)), "v", target_bytes=total // 3)
    assert 2 <= len(done.files) <= 4
    held = [mask_files(Location(str(root)), "v").compacted[f] for f in done.files]
    assert sorted(set().union(*held)) == [(0, c) for c in range(FRAMES // 4)]
    assert rows(Dataset(str(root)), "v") == before


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", ["write", "delete"])
def test_a_crash_mid_compaction_leaves_each_row_visible_once_and_a_rerun_finishes(
        video, monkeypatch, step):
    """Crash after the first compacted file is written (before the second), or
    after the first part is deleted: readers see each row once, resume sees every
    chunk committed, and the next compaction leaves only compacted files."""
    root, before = video
    loc = Location(str(root))
    total = sum(p.stat().st_size for p in (root / "masks" / "v").iterdir())
    real = getattr(Location, step)
    calls = []

    def failing(self, relpath, *args):
        calls.append(relpath)
        if len(calls) == 2:
            raise Crash(relpath)
        return real(self, relpath, *args)

    monkeypatch.setattr(Location, step, failing)
    with pytest.raises(Crash):
        compact_video(loc, "v", target_bytes=total // 3)
    monkeypatch.setattr(Location, step, real)

    names = sorted(p.name for p in (root / "masks" / "v").iterdir())
    assert any(n.startswith("compact-") for n in names) and any(n.startswith("part-")
                                                               for n in names)
    assert rows(Dataset(str(root)), "v") == before, "a row seen twice, or lost"
    assert committed_chunks(loc, "v") == {(0, c) for c in range(FRAMES // 4)}

    compact_video(loc, "v", target_bytes=total // 3)
    names = sorted(p.name for p in (root / "masks" / "v").iterdir())
    assert names and all(n.startswith("compact-") for n in names)
    assert rows(Dataset(str(root)), "v") == before
    assert visible_mask_files(loc, "v") == [f"masks/v/{n}" for n in names]


def test_compacting_a_compacted_video_changes_nothing(video):
    root, before = video
    loc = Location(str(root))
    compact_video(loc, "v")
    mtime = (root / "masks" / "v" / "compact-s000-c00000.parquet").stat().st_mtime_ns
    again = compact_video(loc, "v")
    assert again.files == [] and again.parts_deleted == 0
    assert (root / "masks" / "v" / "compact-s000-c00000.parquet").stat().st_mtime_ns == mtime
    assert rows(Dataset(str(root)), "v") == before


@pytest.mark.parametrize(("text", "expected"), [
    ("last", KeepStates("last")),
    ("all", KeepStates("all")),
    ("every:18000", KeepStates("every", 18000)),
    ("every:0", ConfigError),
    ("every", ConfigError),
    ("last:3", ConfigError),
    ("sometimes", ConfigError),
])
def test_keep_states_parses_last_every_n_and_all(text, expected):
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="every:N"):
            KeepStates.parse(text)
    else:
        assert KeepStates.parse(text) == expected


@pytest.mark.parametrize(("policy", "kept"), [
    ("last", [9]),
    ("all", list(range(10))),
    ("every:16", [3, 7, 9]),  # the first state at or after frames 16 and 32, and the newest
    ("every:6", [1, 2, 4, 5, 7, 8, 9]),
])
def test_retention_keeps_the_newest_state_and_one_per_n_frames(policy, kept):
    keep = KeepStates.parse(policy)
    chunks = [(4 * i, 4 * i + 4) for i in range(10)]
    assert [i for i, (a, b) in enumerate(chunks) if keep.keeps(a, b, last=i == 9)] == kept


# -- engines ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> tuple[Path, dict[str, dict[int, np.ndarray]]]:
    """Four videos, compacted, the dataset committed."""
    root = tmp_path_factory.mktemp("many") / "ds"
    truth = {f"cam-{i}": masks_of(10 + i) for i in range(4)}
    loc = Location(str(root))
    for video_id, masks in truth.items():
        write_video(root, video_id, masks, chunk_frames=4)
        compact_video(loc, video_id, row_group_bytes=4 << 10)
    finish(root)
    return root, truth


def decode(row: dict) -> np.ndarray:
    rle = {"size": [row["height"], row["width"]], "counts": row["rle"].encode()}
    return mask_utils.decode(rle).astype(bool)


def test_pyarrow_dataset_reads_one_object_skipping_other_videos_and_objects(many):
    root, truth = many
    dataset = pads.dataset(root / "masks", format="parquet")
    want = (pads.field("video_id") == "cam-2") & (pads.field("obj_id") == 2)
    # Pushdown: footer statistics rule out other videos' files and other objects'
    # row groups before a byte of their data is read.
    groups = [g for f in dataset.get_fragments() for g in f.split_by_row_group(want)]
    everything = [g for f in dataset.get_fragments() for g in f.split_by_row_group()]
    assert {Path(g.path).parent.name for g in groups} == {"cam-2"}
    assert len(groups) < len(everything) / 4
    table = dataset.to_table(filter=want).sort_by("frame_idx")
    assert table["frame_idx"].to_pylist() == list(range(FRAMES))
    for row in table.to_pylist():
        assert np.array_equal(decode(row), truth["cam-2"][2][row["frame_idx"]])


def test_duckdb_reads_one_object_with_the_filter_pushed_down(many):
    root, truth = many
    con = duckdb.connect()
    query = (f"SELECT frame_idx, height, width, rle FROM read_parquet('{root}/masks/*/*.parquet') "
             "WHERE video_id = 'cam-1' AND obj_id = 3 ORDER BY frame_idx")
    plan = "".join(r[1] for r in con.execute(f"EXPLAIN {query}").fetchall())
    assert "Filters" in plan and "obj_id" in plan  # the filter sits in the Parquet scan
    got = con.execute(query).fetchall()
    assert [r[0] for r in got] == list(range(FRAMES))
    for frame, h, w, counts in got:
        row = {"height": h, "width": w, "rle": counts}
        assert np.array_equal(decode(row), truth["cam-1"][3][frame])


@pytest.mark.slow
def test_ray_data_reads_one_object_with_the_filter_pushed_down(ray_local, many):
    import ray.data
    from ray.data.expressions import col

    root, truth = many
    # Ray Data pushes an expression filter down into its Parquet read.
    ds = ray.data.read_parquet(str(root / "masks")).filter(
        expr=(col("video_id") == "cam-0") & (col("obj_id") == 1))
    got = sorted(ds.take_all(), key=lambda r: r["frame_idx"])
    assert [r["frame_idx"] for r in got] == list(range(FRAMES))
    for row in got:
        assert np.array_equal(decode(row), truth["cam-0"][1][row["frame_idx"]])
