"""``sam-batch run`` end to end: real sam2, real Ray, real videos, real S3.

What a user relies on: the dataset is complete (every frame of every live
object), reads back with pyarrow, decodes with pycocotools, equals the official
single-pass predictor, works on object storage, and bad input fails one video
with a message while the others go on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from media import write_audio_only, write_video_without_frames
from pycocotools import mask as mask_utils
from reference import official_pass
from sam2.build_sam import build_sam2_video_predictor

from sam_batch.cli import main
from sam_batch.config import JobConfig
from sam_batch.dataset.reader import Dataset
from sam_batch.driver.job import run
from sam_batch.media.decode import read_frames
from sam_batch.synthetic import first_frame_prompts, generate, write_mp4

pytestmark = pytest.mark.slow


def make_video(
    folder: Path, seed: int, frames: int, objects: int, kind: str = "box"
) -> tuple[Path, list[dict]]:
    clip = generate(
        seed, width=64, height=48, num_frames=frames, num_objects=objects, enter_leave=False
    )
    path = folder / f"v{seed}.mp4"
    write_mp4(clip, path, gop_size=5)
    prompts = [{**p, "frame": 0} for p in first_frame_prompts(clip, kind)]
    return path, prompts


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_run_writes_a_complete_dataset_equal_to_the_official_single_pass(ray_local, tmp_path):
    a, a_prompts = make_video(tmp_path, seed=1, frames=14, objects=2)
    b, b_prompts = make_video(tmp_path, seed=2, frames=9, objects=1, kind="points")
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [
            {"video": str(a), "video_id": "a", "prompts": a_prompts},
            {"video": str(b), "prompts": b_prompts},  # id derived from the file name
        ],
    )
    out = tmp_path / "ds"
    config = JobConfig(
        manifest=str(manifest),
        output=str(out),
        random_weights=True,
        image_size=256,
        chunk_frames=4,
        workers=1,
        cpus_per_worker=1,
        progress="off",
    )
    summary = run(config)
    assert summary.ok and summary.videos_ok == 2 and summary.frames == 14 + 9

    ds = Dataset(str(out))
    job = ds.job()
    assert job is not None and job["counts"]["videos_ok"] == 2
    assert job["model"]["weights"] == "random:seed=0" and job["model"]["image_size"] == 256
    table = pq.read_table(out / "masks")  # plain pyarrow reads the whole dataset
    assert table.num_rows == 14 * 2 + 9 * 1
    assert sorted(ds.video_ids()) == ["a", "v2"]
    for video_id, frames, objects in (("a", 14, [1, 2]), ("v2", 9, [1])):
        rows = ds.masks(video_id).to_pylist()
        keys = {(r["frame_idx"], r["obj_id"]) for r in rows}
        assert keys == {(f, o) for f in range(frames) for o in objects}, "a frame is missing"
        assert len(keys) == len(rows), "duplicate rows"
        for r in rows:  # pycocotools reads every mask; bbox and area agree with it
            rle = {"size": [r["height"], r["width"]], "counts": r["rle"].encode()}
            m = mask_utils.decode(rle)
            assert m.shape == (48, 64) and int(m.sum()) == r["area"]
            assert list(mask_utils.toBbox(rle)) == pytest.approx(r["bbox"])
        tracks = ds.tracks(video_id).to_pylist()
        assert [t["obj_id"] for t in tracks] == objects
        for t in tracks:
            present = [r["frame_idx"] for r in rows if r["obj_id"] == t["obj_id"] and r["area"]]
            assert t["frames_present"] == len(present)
            assert (t["first_frame"], t["last_frame"]) == (min(present), max(present))
    assert ds.video("a")["status"] == "ok" and ds.video("a")["chunks"] == 4

    # The chunked, distributed output equals the official predictor on the same pixels
    # (one torch thread, as in the worker: thread counts change the last float bits).
    torch.manual_seed(0)
    official = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        device="cpu",
        hydra_overrides_extra=["++model.image_size=256"],
    )
    from sam_batch.plan.prompts import Prompt

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        frames = np.stack([rgb for _, rgb in read_frames(str(a), 0, 14)])
        reference = official_pass(
            official, frames, [Prompt.from_dict(p) for p in a_prompts], tmp_path / "ref"
        )
    finally:
        torch.set_num_threads(threads)
    for frame_idx, objects in ds.iter_frames("a"):
        for obj_id, row in objects.items():
            expected = (reference[frame_idx][obj_id] > 0).numpy()
            assert np.array_equal(row.mask(), expected), f"frame {frame_idx} object {obj_id}"


def test_run_reads_videos_from_and_writes_the_dataset_to_s3(ray_local, s3, tmp_path):
    path, prompts = make_video(tmp_path, seed=3, frames=6, objects=1)
    s3.upload(path, "in/clip.mp4")
    manifest = write_manifest(
        tmp_path / "m.jsonl", [{"video": s3.url("in/clip.mp4"), "prompts": prompts}]
    )
    s3.upload(manifest, "in/manifest.jsonl")
    out = s3.url("datasets/run1")
    summary = run(
        JobConfig(
            manifest=s3.url("in/manifest.jsonl"),
            output=out,
            random_weights=True,
            image_size=128,
            chunk_frames=4,
            workers=1,
            storage_options=s3.storage_options,
            progress="off",
        )
    )
    assert summary.ok
    ds = Dataset(out, s3.storage_options)
    assert ds.job() is not None
    assert ds.masks("clip").num_rows == 6
    assert [f for f, _ in ds.iter_frames("clip")] == list(range(6))


def test_bad_input_fails_its_own_video_with_a_clear_message_and_the_rest_go_on(ray_local, tmp_path):
    good, prompts = make_video(tmp_path, seed=4, frames=5, objects=1)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(5000))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    audio = write_audio_only(tmp_path / "audio.mkv")
    empty = write_video_without_frames(tmp_path / "empty.mkv")
    point = prompts[0]
    rows = [
        {"video": str(good), "video_id": "good", "prompts": prompts},
        {"video": str(tmp_path / "missing.mp4"), "video_id": "missing", "prompts": prompts},
        {"video": str(corrupt), "video_id": "corrupt", "prompts": prompts},
        {"video": str(truncated), "video_id": "truncated", "prompts": prompts},
        {"video": str(audio), "video_id": "audio", "prompts": prompts},
        {"video": str(empty), "video_id": "empty", "prompts": prompts},
        {"video": str(good), "video_id": "late", "prompts": [{**point, "frame": 99}]},
        {
            "video": str(good),
            "video_id": "outside",
            "prompts": [{"obj_id": 1, "frame": 0, "points": [[500, 10]], "labels": [1]}],
        },
        {"video": str(good), "video_id": "noprompts"},
        {"video": str(good), "video_id": "twice", "prompts": prompts},
        {"video": str(good), "video_id": "twice", "prompts": prompts},
        {"video_id": "novideo", "prompts": prompts},
        {"video": str(good), "video_id": "badjson", "prompts": "[{not json"},
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    out = tmp_path / "ds"
    code = main(
        [
            "run",
            "--manifest",
            str(manifest),
            "--output",
            str(out),
            "--random-weights",
            "--image-size",
            "128",
            "--chunk-frames",
            "4",
            "--workers",
            "1",
            "--progress",
            "off",
        ]
    )
    assert code == 1, "a failed video makes the exit code non-zero"
    status: dict[str, list] = {}
    for r in Dataset(str(out)).videos().to_pylist():
        status.setdefault(r["video_id"], []).append((r["status"], r["error"] or ""))
    assert status["good"] == [("ok", "")]
    expected = {
        "missing": "does not exist",
        "corrupt": "not",  # not a video / cannot be read
        "truncated": "truncated",
        "audio": "no video stream",
        "empty": "frames",
        "late": "frame 99 is outside the video",
        "outside": "outside the 64x48 frame",
        "noprompts": "no prompts",
        "twice": "duplicate video_id 'twice'",
        "novideo": "'video' is missing",
        "badjson": "not valid JSON",
    }
    for vid, words in expected.items():
        assert vid in status, f"no videos/ row for {vid}"
        for st, error in status[vid]:
            assert st == "failed" and words in error, (vid, error)
            assert "Traceback" not in error and 'File "' not in error, "a message, not a trace"
    assert len(status["twice"]) == 2
    ds = Dataset(str(out))
    assert ds.mask_parts("good") and not ds.mask_parts("late"), "failed videos leave no masks"
    assert ds.masks("good").num_rows == 5


def test_a_checkpoint_the_workers_cannot_load_stops_the_job_with_one_clear_line(
        ray_local, tmp_path, capsys):
    """Workers load the model while the driver probes (start-up overlaps); a model
    that cannot load must still stop the job at once with the reason, not retry
    every chunk on fresh actors or print Ray's traceback."""
    video, prompts = make_video(tmp_path, seed=5, frames=3, objects=1)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"video": str(video), "prompts": prompts}])
    bad = tmp_path / "not-a-checkpoint.pt"
    bad.write_bytes(b"this is not a torch checkpoint")
    code = main(["run", "--manifest", str(manifest), "--output", str(tmp_path / "ds"),
                 "--model", "sam2.1_hiera_t", "--checkpoint", str(bad), "--image-size", "128",
                 "--workers", "1", "--progress", "off"])
    err = capsys.readouterr().err
    assert code != 0
    assert "a worker could not load the model" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ds" / "_job.json").exists(), "a job that ran nothing is not complete"


def test_storage_secrets_and_endpoints_never_reach_the_dataset_or_the_output(s3, tmp_path):
    """A recognisable fake secret, used for real against the S3 server (moto checks
    nothing), must appear nowhere: not in _job.json, not in videos/ errors, not in
    what the command prints, though a video fails on that very storage."""
    secret, key_id = "SAMBATCH-FAKE-SECRET-7f3a9c", "AKIAFAKEKEY0SAMBATCH"
    endpoint = s3.endpoint_url
    options = {"key": key_id, "secret": secret, "client_kwargs": {"endpoint_url": endpoint}}
    path, prompts = make_video(tmp_path, seed=5, frames=4, objects=1)
    s3.upload(path, "sec/ok.mp4")
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [
            {"video": s3.url("sec/ok.mp4"), "video_id": "ok", "prompts": prompts},
            {"video": s3.url("sec/missing.mp4"), "video_id": "missing", "prompts": prompts},
        ],
    )
    out = s3.url("sec/ds")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sam_batch.cli",
            "run",
            "--manifest",
            str(manifest),
            "--output",
            out,
            "--random-weights",
            "--image-size",
            "128",
            "--workers",
            "1",
            "--storage-options",
            json.dumps(options),
            "--progress",
            "log",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr[-3000:]  # one video failed
    printed = done.stdout + done.stderr
    assert "missing" in printed and "does not exist" in printed
    ds = Dataset(out, s3.storage_options)
    stored = [ds.location.read(p) for p in ds.location.list("")]
    assert any(b"does not exist" in blob for blob in stored)
    job = ds.job()
    assert job["config"]["storage_options"]["secret"] == "***"
    for needle in (secret, key_id, endpoint):
        assert needle not in printed, f"{needle} printed"
        for blob in stored:
            assert needle.encode() not in blob, f"{needle} stored"


def test_chunks_per_call_writes_the_same_bytes_as_one_chunk_a_call(ray_local, tmp_path):
    """``--chunks-per-call`` only changes how often the driver hears from an actor: every
    mask part, track and kept state is the same file as with one chunk per call."""
    a, a_prompts = make_video(tmp_path, seed=1, frames=14, objects=2)
    manifest = write_manifest(tmp_path / "m.jsonl",
                              [{"video": str(a), "video_id": "a", "prompts": a_prompts}])
    outputs = []
    for per_call in (1, 3):  # 4 chunks: calls of 3 and 1
        out = tmp_path / f"ds{per_call}"
        summary = run(JobConfig(manifest=str(manifest), output=str(out), random_weights=True,
                                image_size=256, chunk_frames=4, workers=1, cpus_per_worker=1,
                                progress="off", keep_states="every:8",
                                chunks_per_call=per_call))
        assert summary.ok and summary.chunks == 4 and summary.frames == 14
        outputs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*"))
                        if p.is_file() and p.parts[len(out.parts)] in ("masks", "tracks",
                                                                       "_states")})
    one, many = outputs
    assert sorted(one) == sorted(many) and any(p.suffix == ".state" for p in one)
    assert all(one[p] == many[p] for p in one), [str(p) for p in one if one[p] != many[p]]
