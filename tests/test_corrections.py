"""``sam-batch correct`` equals the official predictor's interactive flow.

Official: propagate through the video, add the correction on frame t, propagate
forward from t. The dataset after ``correct`` must hold pass 1's masks before t
and pass 2's from t on, bit for bit, for an existing object corrected by a click
and a new object added by a box. The official predictor is built with
``add_all_frames_to_correct_as_cond`` on (``track/correct.py`` says why).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sam2.build_sam import build_sam2_video_predictor

from sam_batch.cli import main
from sam_batch.config import JobConfig
from sam_batch.dataset.reader import Dataset
from sam_batch.driver.job import run
from sam_batch.media.decode import read_frames
from sam_batch.plan.prompts import Prompt
from sam_batch.synthetic import first_frame_prompts, generate, write_mp4

pytestmark = pytest.mark.slow
FRAMES, T = 14, 9
FIX = [{"obj_id": 2, "frame": T, "points": [[20, 30]], "labels": [1]},
       {"obj_id": 5, "frame": T, "box": [30, 10, 60, 40]}]


def clip_manifest(folder: Path, frames: int) -> tuple[Path, list[dict], Path]:
    """The correction tests' video: two boxed objects in a synthetic clip, prompted on
    frame 0, as one manifest row (video id ``clip``): the video, its prompts, the manifest."""
    clip = generate(11, width=64, height=48, num_frames=frames, num_objects=2,
                    enter_leave=False)
    video = write_mp4(clip, folder / "clip.mp4", gop_size=5).path
    prompts = [{**p, "frame": 0} for p in first_frame_prompts(clip, "box")]
    manifest = folder / "m.jsonl"
    manifest.write_text(json.dumps({"video": str(video), "video_id": "clip",
                                    "prompts": prompts}) + "\n")
    return video, prompts, manifest


def official(frames: np.ndarray, prompts: list[Prompt], fix: list[Prompt], folder: Path,
             t: int = T):
    """Pass 1 (propagate), then the fix on t and pass 2 from t: masks by frame and object."""
    from PIL import Image

    torch.manual_seed(0)
    predictor = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu",
        hydra_overrides_extra=["++model.image_size=128",
                               "++model.add_all_frames_to_correct_as_cond=true"])
    folder.mkdir()
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / f"{i:05d}.jpg", format="PNG")

    def add(state, p):
        if p.box is not None:
            predictor.add_new_points_or_box(state, p.frame, p.obj_id, box=list(p.box))
        else:
            predictor.add_new_points_or_box(state, p.frame, p.obj_id,
                                            points=[list(xy) for xy in p.points],
                                            labels=list(p.labels))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            state = predictor.init_state(str(folder))
            for p in prompts:
                add(state, p)
            first = {f: {o: (m[k, 0] > 0).numpy() for k, o in enumerate(ids)}
                     for f, ids, m in predictor.propagate_in_video(state)}
            for p in fix:
                add(state, p)
            second = {f: {o: (m[k, 0] > 0).numpy() for k, o in enumerate(ids)}
                      for f, ids, m in predictor.propagate_in_video(state, start_frame_idx=t)}
    finally:
        torch.set_num_threads(threads)
    return first, second


def masks(ds: Dataset) -> dict[int, dict[int, np.ndarray]]:
    out: dict[int, dict[int, np.ndarray]] = {}
    for f, objects in ds.iter_frames("clip"):
        out[f] = {o: row.mask() for o, row in objects.items()}
    return out


def test_correct_equals_the_official_flow_on_disk_and_s3(ray_local, s3, tmp_path, capsys):
    video, prompts, manifest = clip_manifest(tmp_path, FRAMES)
    fixes = tmp_path / "fixes.jsonl"
    fixes.write_text(json.dumps({"video_id": "clip", "prompts": FIX}) + "\n")
    out = tmp_path / "ds"
    config = JobConfig(manifest=str(manifest), output=str(out), random_weights=True,
                       image_size=128, chunk_frames=4, workers=1, cpus_per_worker=1,
                       progress="off")
    assert run(config).ok
    before = {p: (out / p).read_bytes() for p in ("_job.json",)}
    pristine = masks(Dataset(str(out)))

    # Bad input changes nothing.
    for bad, words in ((("nope", FIX), "not a finished video"),
                       (("clip", [{**FIX[0], "frame": 99}]), "outside"),
                       (("clip", [FIX[0], {**FIX[1], "frame": 3}]), "one frame")):
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps({"video_id": bad[0], "prompts": bad[1]}) + "\n")
        assert main(["correct", str(out), "--prompts", str(path)]) == 2
        assert words in capsys.readouterr().err
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    torch.save({"model": build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu",
        hydra_overrides_extra=["++model.image_size=128"]).state_dict()}, other)
    assert main(["correct", str(out), "--prompts", str(fixes), "--checkpoint", str(other)]) == 2
    assert "another model" in capsys.readouterr().err
    assert masks(Dataset(str(out))).keys() == pristine.keys()
    assert (out / "_job.json").read_bytes() == before["_job.json"]
    assert not (out / "_correction.json").exists() and not (out / "_staging").exists()

    assert main(["correct", str(out), "--prompts", str(fixes)]) == 0
    assert f"re-tracked {FRAMES - T} of {FRAMES} frames" in capsys.readouterr().out
    frames = np.stack([rgb for _, rgb in read_frames(str(video), 0, FRAMES)])
    first, second = official(frames, [Prompt.from_dict(p) for p in prompts],
                             [Prompt.from_dict(p) for p in FIX], tmp_path / "ref")
    expected = {f: (first[f] if f < T else second[f]) for f in range(FRAMES)}
    assert any(not np.array_equal(first[f][2], second[f][2]) for f in range(T, FRAMES)), \
        "the correction changes object 2"
    got = masks(Dataset(str(out)))
    assert sorted(got) == list(range(FRAMES))
    for f in range(FRAMES):
        assert sorted(got[f]) == sorted(expected[f]), f"objects on frame {f}"
        for o, m in expected[f].items():
            assert np.array_equal(got[f][o], m), f"frame {f} object {o}"
    job = Dataset(str(out)).job()
    assert [(c["video_id"], c["frame"]) for c in job["corrections"]] == [("clip", T)]
    assert Dataset(str(out)).video("clip")["objects"] == 3

    # On the S3 server: the same job and correction give the same masks.
    url = s3.upload(video, "fix/clip.mp4")
    manifest.write_text(json.dumps({"video": url, "video_id": "clip", "prompts": prompts}) + "\n")
    s3_out = s3.url("fix/ds")
    assert run(JobConfig(**{**config.to_dict(), "output": s3_out,
                            "storage_options": s3.storage_options})).ok
    so = json.dumps(s3.storage_options)
    assert main(["correct", s3_out, "--prompts", str(fixes), "--storage-options", so]) == 0
    got = masks(Dataset(s3_out, s3.storage_options))
    for f in range(FRAMES):
        for o, m in expected[f].items():
            assert np.array_equal(got[f][o], m), f"s3: frame {f} object {o}"
