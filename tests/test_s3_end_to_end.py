"""The same job on S3 as on local disk: checkpoint, manifest, videos and output in
the bucket, a segmented run, and a driver killed and run again; each dataset's
mask rows (RLE, area, score per frame and object) and tracks equal the local job's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import fsspec
import pyarrow.parquet as pq
import pytest
import ray

from sam_batch.config import JobConfig
from sam_batch.driver.job import run
from sam_batch.models import shipped_checkpoint
from sam_batch.synthetic import first_frame_prompts, generate, write_mp4

pytestmark = pytest.mark.slow

FRAMES, CHUNK = 16, 2
SEGMENTED = {"segments": 2, "overlap": 4, "sparse_step": 4}


@pytest.fixture(scope="module")
def inputs(s3, tmp_path_factory) -> dict:
    """The video and manifest on disk and in the bucket, and the shipped weights in the bucket."""
    folder = tmp_path_factory.mktemp("s3e2e")
    clip = generate(17, width=64, height=48, num_frames=FRAMES, num_objects=2, enter_leave=False)
    write_mp4(clip, folder / "v.mp4")
    prompts = [{**p, "frame": 0} for p in first_frame_prompts(clip, "box")]
    video_url = s3.upload(folder / "v.mp4", "e2e/in/v.mp4")
    for name, video in (("local.jsonl", str(folder / "v.mp4")), ("s3.jsonl", video_url)):
        (folder / name).write_text(json.dumps({"video": video, "video_id": "v",
                                               "prompts": prompts}) + "\n")
    return {"local": str(folder / "local.jsonl"),
            "s3": s3.upload(folder / "s3.jsonl", "e2e/in/m.jsonl"),
            "checkpoint": s3.upload(shipped_checkpoint("sam-batch-tiny"), "e2e/in/tiny.pt"),
            "folder": folder}


def config(manifest: str, output: str, checkpoint: str | None = None, **extra) -> JobConfig:
    return JobConfig(manifest=manifest, output=output, model="sam-batch-tiny",
                     checkpoint=checkpoint, chunk_frames=CHUNK, workers=1, cpus_per_worker=1,
                     progress="off", **extra)


def dataset(root: str, storage_options: dict | None = None) -> tuple[list, list]:
    """Mask rows and tracks of a dataset on disk or in the bucket, in a fixed order."""
    fs, path = fsspec.core.url_to_fs(root, **(storage_options or {}))
    fs.invalidate_cache()
    assert fs.exists(f"{path}/_job.json"), root
    masks = pq.read_table(f"{path}/masks", filesystem=fs).to_pylist()
    keys = [(r["frame_idx"], r["obj_id"]) for r in masks]
    assert len(keys) == len(set(keys)) == FRAMES * 2, "duplicate or missing rows"
    return (sorted(masks, key=lambda r: (r["frame_idx"], r["obj_id"])),
            sorted(pq.read_table(f"{path}/tracks", filesystem=fs).to_pylist(),
                   key=lambda r: r["obj_id"]))


@pytest.fixture(scope="module")
def local(inputs, ray_local, tmp_path_factory) -> dict:
    """The job on local disk, whole and in segments, with the shipped weights."""
    root = tmp_path_factory.mktemp("local")
    found = {}
    for name, extra in (("whole", {}), ("segmented", SEGMENTED)):
        assert run(config(inputs["local"], str(root / name), **extra)).ok
        found[name] = dataset(str(root / name))
    return found


def test_a_segmented_job_on_s3_with_an_s3_checkpoint_equals_the_local_job(
        s3, inputs, local, ray_local):
    out = s3.url("e2e/segmented")
    summary = run(config(inputs["s3"], out, inputs["checkpoint"],
                         storage_options=s3.storage_options, **SEGMENTED))
    assert summary.ok, summary.text()
    assert dataset(out, s3.storage_options) == local["segmented"]
    fs = fsspec.filesystem("s3", **s3.storage_options)
    job = json.loads(fs.cat_file(f"{s3.bucket}/e2e/segmented/_job.json"))
    assert job["config"]["checkpoint"] == inputs["checkpoint"]
    assert not fs.exists(f"{s3.bucket}/e2e/segmented/_staging")


def test_a_driver_killed_on_s3_and_run_again_resumes_to_the_local_jobs_dataset(
        s3, inputs, local, ray_local):
    """The driver joins the module's Ray (``--address``): killing it by PID ends its
    actors with it (Ray ends an owner's actors), as a lost driver's would be."""
    out = s3.url("e2e/killed")
    cmd = [sys.executable, "-m", "sam_batch.cli", "run", "--manifest", inputs["s3"],
           "--output", out, "--model", "sam-batch-tiny", "--checkpoint", inputs["checkpoint"],
           "--chunk-frames", str(CHUNK), "--workers", "1", "--cpus-per-worker", "1",
           "--progress", "off", "--storage-options", json.dumps(s3.storage_options),
           "--address", ray.get_runtime_context().gcs_address]
    fs = fsspec.filesystem("s3", **s3.storage_options)
    part = f"{s3.bucket}/e2e/killed/masks/v/part-s000-c00001.parquet"
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not fs.exists(part):
            assert time.monotonic() < deadline, "chunk 1 never committed"
            assert driver.poll() is None, "the driver ended before it could be killed"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    fs.invalidate_cache()
    assert not fs.exists(f"{s3.bucket}/e2e/killed/_job.json"), "killed after it had finished"
    committed = fs.glob(f"{s3.bucket}/e2e/killed/masks/v/part-*.parquet")
    assert 2 <= len(committed) < FRAMES // CHUNK, committed

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "resuming the job" in again.stderr, again.stderr[-3000:]
    assert dataset(out, s3.storage_options) == local["whole"]
    counts = json.loads(fs.cat_file(f"{s3.bucket}/e2e/killed/_job.json"))["counts"]
    assert counts["frames_tracked"] <= FRAMES - 2 * CHUNK, counts  # resumed, not restarted
