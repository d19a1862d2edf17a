"""Manifests in every format the README names, with every prompt kind, and bad prompts.

JSONL, CSV (prompts as JSON text) and Parquet (prompts as a list of structs)
read to the same prompts. A job over a CSV or a Parquet manifest tracks its
good video to the same masks, and each malformed prompt (a box with x1 < x0,
more labels than points, a mask RLE of the wrong size, NaN) fails its own
video with a message naming the field, while the others go on.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sam_batch.config import JobConfig
from sam_batch.dataset import rle
from sam_batch.dataset.reader import Dataset
from sam_batch.errors import PromptError
from sam_batch.media.manifest import read_manifest
from sam_batch.plan.prompts import Prompt, validate_prompts
from sam_batch.synthetic import generate, write_mp4

W, H, FRAMES = 64, 48, 4


def mask_rle(x0: int, y0: int, x1: int, y1: int, size: tuple[int, int] = (H, W)) -> str:
    m = np.zeros(size, bool)
    m[y0:y1, x0:x1] = True
    return rle.encode(m).rle


#: Every prompt kind, on two frames: points with labels, a box, a box with points,
#: a mask as COCO compressed RLE.
EVERY_KIND = [
    {"obj_id": 1, "frame": 0, "points": [[20, 14], [40, 30]], "labels": [1, 0]},
    {"obj_id": 2, "frame": 0, "box": [30, 10, 60, 40]},
    {"obj_id": 3, "frame": 1, "box": [2, 2, 20, 20], "points": [[10, 10]], "labels": [1]},
    {"obj_id": 4, "frame": 0, "mask": {"size": [H, W], "counts": mask_rle(5, 25, 25, 45)}},
]

#: Row name -> (its prompts, the field its error must name).
MALFORMED = {
    "box-x1-before-x0": ([{"obj_id": 1, "frame": 0, "box": [40, 10, 20, 30]}], "'box'"),
    "labels-longer": ([{"obj_id": 1, "frame": 0, "points": [[10, 10]], "labels": [1, 0]}],
                      "'labels'"),
    "rle-wrong-size": ([{"obj_id": 1, "frame": 0,
                         "mask": {"size": [H, W], "counts": mask_rle(1, 1, 5, 5, (24, 32))}}],
                       "'mask'"),
    "nan-point": ([{"obj_id": 1, "frame": 0, "points": [[float("nan"), 10]], "labels": [1]}],
                  "'points'"),
    "nan-box": ([{"obj_id": 1, "frame": 0, "box": [float("nan"), 1, 20, 20]}], "'box'"),
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["video", "video_id", "prompts"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "prompts": json.dumps(r["prompts"])})
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}


def test_csv_and_parquet_read_every_prompt_kind_as_jsonl_does(tmp_path):
    rows = [{"video": "/videos/a.mp4", "video_id": "a", "prompts": EVERY_KIND},
            {"video": "/videos/b.mp4", "video_id": "b", "prompts": EVERY_KIND[1:2]}]
    read = {fmt: read_manifest(str(write(tmp_path / f"m.{fmt}", rows)))
            for fmt, write in WRITERS.items()}
    assert all(e.error is None for entries in read.values() for e in entries)
    assert read["csv"] == read["jsonl"] and read["parquet"] == read["jsonl"]
    prompts = validate_prompts(read["parquet"][0].prompts, FRAMES, W, H)
    assert sorted(p.kind for p in prompts) == ["box", "box+points", "mask", "points"]
    assert next(p for p in prompts if p.kind == "mask").mask().sum() == 20 * 20


def test_uncompressed_rle_counts_in_csv_read_as_the_compressed_mask(tmp_path):
    m = np.zeros((H, W), bool)
    m[25:45, 5:25] = True
    flat = m.flatten(order="F")
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat.view(np.uint8), [2]])))
    counts = np.diff(np.concatenate([[0], edges])).tolist()  # runs, starting with zeros
    row = {"video": "/v.mp4", "video_id": "v",
           "prompts": [{"obj_id": 4, "frame": 0, "mask": {"size": [H, W], "counts": counts}}]}
    entry = read_manifest(str(write_csv(tmp_path / "m.csv", [row])))[0]
    assert entry.error is None
    assert entry.prompts[0].mask_rle == EVERY_KIND[3]["mask"]["counts"]


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_each_malformed_prompt_is_refused_naming_its_field(name):
    prompts, field = MALFORMED[name]
    with pytest.raises(PromptError, match=f"field {field}"):
        validate_prompts([Prompt.from_dict(p) for p in prompts], FRAMES, W, H)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("manifest-video") / "v.mp4"
    write_mp4(generate(3, width=W, height=H, num_frames=FRAMES, num_objects=2), path)
    return path


@pytest.fixture(scope="module")
def jsonl_masks(video, ray_local, tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("jsonl-job")
    manifest = write_jsonl(folder / "m.jsonl",
                           [{"video": str(video), "video_id": "good", "prompts": EVERY_KIND}])
    return _run(manifest, folder / "ds")[1]


def _run(manifest: Path, out: Path) -> tuple[dict[str, tuple[str, str]], list[dict]]:
    from sam_batch.driver.job import run  # Ray: only the job tests import it

    run(JobConfig(manifest=str(manifest), output=str(out), random_weights=True, image_size=128,
                  chunk_frames=2, workers=1, cpus_per_worker=1, progress="off"))
    ds = Dataset(str(out))
    status = {r["video_id"]: (r["status"], r["error"] or "") for r in ds.videos().to_pylist()}
    masks = sorted(ds.masks("good").to_pylist(), key=lambda r: (r["frame_idx"], r["obj_id"]))
    return status, masks


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_job_over_a_csv_or_parquet_manifest_fails_only_the_malformed_videos(
        fmt, video, jsonl_masks, ray_local, tmp_path):
    rows = [{"video": str(video), "video_id": "good", "prompts": EVERY_KIND}]
    rows += [{"video": str(video), "video_id": name, "prompts": prompts}
             for name, (prompts, _) in MALFORMED.items()]
    if fmt == "parquet":  # one prompt schema per column: each row's prompts as JSON text
        rows = [{**r, "prompts": json.dumps(r["prompts"])} for r in rows]
    status, masks = _run(WRITERS[fmt](tmp_path / f"m.{fmt}", rows), tmp_path / "ds")
    assert status["good"] == ("ok", "")
    assert masks == jsonl_masks, "the same prompts track to the same masks from any manifest"
    assert {r["obj_id"] for r in masks} == {1, 2, 3, 4}
    for name, (_, field) in MALFORMED.items():
        state, error = status[name]
        assert state == "failed" and f"field {field}" in error, (name, error)
        assert "Traceback" not in error
