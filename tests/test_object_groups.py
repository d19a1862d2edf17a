"""``--objects-per-worker``: a video's objects split over chains equal the unsplit run.

SAM 2.1 tracks objects independently, so every mask of a run whose objects were
split into groups (each group its own chain, on any actor) must equal the
unsplit run's: same rows, same RLE, same scores. One object is first prompted on
a later frame, in a group of its own: it must still start at the video's first
prompted frame, as the predictor starts every object.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sam_batch.config import JobConfig
from sam_batch.dataset.reader import Dataset
from sam_batch.driver.job import run
from sam_batch.errors import ConfigError
from sam_batch.plan.prompts import Prompt
from sam_batch.synthetic import first_frame_prompts, generate, write_mp4

FRAMES = 8


def make_video(folder: Path) -> tuple[Path, list[dict]]:
    clip = generate(7, width=64, height=48, num_frames=FRAMES, num_objects=3, enter_leave=False)
    path = folder / "groups.mp4"
    write_mp4(clip, path, gop_size=5)
    prompts = [{**p, "frame": 0} for p in first_frame_prompts(clip, "box")]
    # Object 9: first prompted on frame 5, tracked (like every object) from frame 0.
    prompts.append({"obj_id": 9, "frame": 5, "points": [[30, 20]], "labels": [1]})
    prompts.append({"obj_id": 2, "frame": 7, "points": [[10, 10]], "labels": [0]})
    return path, prompts


def job(manifest: str, output: str, k: int | None, **kw) -> JobConfig:
    return JobConfig(manifest=manifest, output=output, random_weights=True, image_size=128,
                     chunk_frames=4, workers=2, cpus_per_worker=1, progress="off",
                     objects_per_worker=k, **kw)


def rows(ds: Dataset) -> dict[tuple[int, int], tuple]:
    table = ds.masks("clip").to_pylist()
    out = {(r["frame_idx"], r["obj_id"]): (r["rle"], r["area"], r["score"], r["chunk_idx"])
           for r in table}
    assert len(out) == len(table), "duplicate rows"
    return out


def test_group_prompts_keeps_each_object_whole_and_config_refuses_mixes():
    prompts = [Prompt(obj_id=o, frame=f, points=((1.0, 1.0),), labels=(1,))
               for o, f in [(1, 0), (2, 0), (3, 4), (1, 6), (4, 2)]]
    from sam_batch.plan.object_groups import group_prompts

    groups = group_prompts(prompts, 3)
    assert [sorted({p.obj_id for p in g}) for g in groups] == [[1, 2, 3], [4]]
    assert sum(len(g) for g in groups) == len(prompts)
    base = {"output": "x", "videos": ["a.mp4"], "random_weights": True}
    with pytest.raises(ConfigError, match="segments"):
        JobConfig(**base, objects_per_worker=2, segments=2).validate()
    with pytest.raises(ConfigError, match="discover"):
        JobConfig(**base, objects_per_worker=2, discover="every:10").validate()
    with pytest.raises(ConfigError, match=">= 1"):
        JobConfig(**base, objects_per_worker=0).validate()


@pytest.mark.slow
def test_split_objects_equal_the_unsplit_run_on_disk_and_on_s3(ray_local, s3, tmp_path):
    video, prompts = make_video(tmp_path)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": str(video), "video_id": "clip",
                                    "prompts": prompts}) + "\n")
    whole = run(job(str(manifest), str(tmp_path / "whole"), None))
    split = run(job(str(manifest), str(tmp_path / "split"), 1))  # 4 groups of 1 object
    assert whole.ok and split.ok
    assert whole.frames == split.frames == FRAMES
    expected = rows(Dataset(str(tmp_path / "whole")))
    assert {k for k in expected} == {(f, o) for f in range(FRAMES) for o in (1, 2, 3, 9)}
    assert 0 < sum(v[1] for v in expected.values()) < FRAMES * 4 * 64 * 48, "masks decide"
    got = Dataset(str(tmp_path / "split"))
    assert rows(got) == expected
    tracks = [(t["obj_id"], t["first_frame"], t["frames_present"])
              for t in got.tracks("clip").to_pylist()]
    assert tracks == [(t["obj_id"], t["first_frame"], t["frames_present"])
                      for t in Dataset(str(tmp_path / "whole")).tracks("clip").to_pylist()]
    assert got.location.list("_staging") == [], "group parts are merged, staging removed"
    assert got.video("clip")["objects"] == 4

    # Object storage: groups of 2 objects, video and dataset on the S3 server.
    url = s3.upload(video, "groups/clip.mp4")
    manifest.write_text(json.dumps({"video": url, "video_id": "clip", "prompts": prompts}) + "\n")
    out = s3.url("groups/ds")
    assert run(job(str(manifest), out, 2, storage_options=s3.storage_options)).ok
    assert rows(Dataset(out, s3.storage_options)) == expected
