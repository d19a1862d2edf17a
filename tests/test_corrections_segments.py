"""``sam-batch correct`` on a video tracked in parallel segments.

Semantics (``driver/correct.py``): the segment that owns frame t (stitching's
ownership rule) is re-tracked from t to its end, from its own kept state; the
rows it owns from t on are replaced; later segments keep their own tracking
(their seeds came from the sparse pass, not from this segment); an object new
to the video is tracked on alone to the video's end. Global ids are the user's
(no discovery), so the stitch keeps them.

A 24-frame video in 2 segments, [0, 12) and [8, 24): segment 0 owns [0, 10).

- In segment 0 (not seeded), the official predictor's interactive flow over the
  whole video is the exact reference for segment 0's frames from t and for the
  new object everywhere from t (objects are tracked independently).
- In segment 1 (seeded from the sparse pass) no official run starts from a seed
  state, so the reference is sam_batch's tracker run in this process from the
  segment's init state: track to t, ``apply_correction``, track to the end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_corrections import clip_manifest, masks, official

from sam_batch.cli import main
from sam_batch.config import JobConfig
from sam_batch.dataset.compact import mask_files
from sam_batch.dataset.layout import init_state_path
from sam_batch.dataset.reader import Dataset
from sam_batch.driver.job import run
from sam_batch.media.decode import read_frames
from sam_batch.media.storage import Location
from sam_batch.media.video import VideoInfo
from sam_batch.plan.prompts import Prompt

pytestmark = pytest.mark.slow
FRAMES, OWNED0 = 24, 10


@pytest.fixture(scope="module")
def segmented(ray_local, tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    folder = tmp_path_factory.mktemp("corr-seg")
    video, prompts, manifest = clip_manifest(folder, FRAMES)
    out = folder / "ds"
    assert run(JobConfig(manifest=str(manifest), output=str(out), random_weights=True,
                         image_size=128, chunk_frames=4, segments=2, overlap=4, sparse_step=4,
                         workers=1, cpus_per_worker=1, progress="off")).ok
    files = mask_files(Location(str(out)), "clip")
    assert {s for s, _ in set(files.parts) | files.covered} == {0, 1}
    return out, video, prompts


def _correct(segmented, tmp_path: Path, fix: list[dict]) -> tuple[Path, dict, dict]:
    src, _, _ = segmented
    out = tmp_path / "ds"
    shutil.copytree(src, out)
    pristine = masks(Dataset(str(out)))
    fixes = tmp_path / "fixes.jsonl"
    fixes.write_text(json.dumps({"video_id": "clip", "prompts": fix}) + "\n")
    assert main(["correct", str(out), "--prompts", str(fixes)]) == 0
    return out, pristine, masks(Dataset(str(out)))


def test_a_correction_in_the_first_segment_equals_the_official_flow_there(
        segmented, tmp_path):
    t = 5
    fix = [{"obj_id": 2, "frame": t, "points": [[20, 30]], "labels": [1]},
           {"obj_id": 5, "frame": t, "box": [30, 10, 60, 40]}]
    out, pristine, got = _correct(segmented, tmp_path, fix)
    _, video, prompts = segmented
    frames = np.stack([rgb for _, rgb in read_frames(str(video), 0, FRAMES)])
    _, second = official(frames, [Prompt.from_dict(p) for p in prompts],
                         [Prompt.from_dict(p) for p in fix], tmp_path / "ref", t)
    assert sorted(got) == list(range(FRAMES))
    for f in range(FRAMES):
        if f < t:  # before t: as before
            assert _same(got[f], pristine[f]), f"frame {f}"
            continue
        assert sorted(got[f]) == [1, 2, 5], f"objects on frame {f}"
        for o in (1, 2):  # segment 0's frames: the flow; segment 1's: its own tracking
            want = second[f][o] if f < OWNED0 else pristine[f][o]
            assert np.array_equal(got[f][o], want), f"frame {f} object {o}"
        assert np.array_equal(got[f][5], second[f][5]), f"frame {f} new object"
    assert any(not np.array_equal(got[f][2], pristine[f][2]) for f in range(t, OWNED0))
    tracks = {r["obj_id"]: r for r in Dataset(str(out)).tracks("clip").to_pylist()}
    assert sorted(tracks) == [1, 2, 5] and tracks[5]["sources"] == ["0:5", "1:5"]
    assert Dataset(str(out)).video("clip")["objects"] == 3
    job = Dataset(str(out)).job()
    assert [(c["video_id"], c["frame"], c.get("segment", 0)) for c in job["corrections"]] \
        == [("clip", t, 0)]


def test_a_correction_in_a_seeded_segment_re_tracks_it_from_its_init_state(
        segmented, tmp_path):
    from sam_batch.track.correct import apply_correction
    from sam_batch.track.frames import VideoFrames
    from sam_batch.track.model import load_model
    from sam_batch.track.state import MemoryState
    from sam_batch.track.tracker import ChunkTracker

    t = 14
    fix = [{"obj_id": 1, "frame": t, "points": [[40, 20]], "labels": [1]}]
    src, _, _ = segmented
    out, pristine, got = _correct(segmented, tmp_path, fix)
    config = JobConfig.from_dict(json.loads((src / "_job.json").read_text())["config"])
    tracker = ChunkTracker(load_model(config.model_spec()))
    info = VideoInfo.from_dict(json.loads((src / "_probe" / "clip.json").read_text()))
    source = VideoFrames(info, {})
    state = MemoryState.from_bytes((src / init_state_path("clip", 1)).read_bytes())
    assert state.next_frame == 8
    expected: dict[int, dict[int, np.ndarray]] = {}
    for end in (t, None):
        if end is None:
            state = apply_correction(tracker, state, source, [Prompt.from_dict(fix[0])])
        run_ = tracker.track(state, source, end or FRAMES)
        for o in run_:
            expected[o.frame_idx] = {i: o.masks[k] for k, i in enumerate(o.obj_ids)}
        state = run_.state
    for f in range(FRAMES):
        if f < t:
            assert _same(got[f], pristine[f]), f"frame {f}"
            if f >= OWNED0:  # the reference replays segment 1 as the job tracked it
                assert _same(expected[f], pristine[f]), f"reference, frame {f}"
            continue
        assert sorted(got[f]) == sorted(expected[f]) == [1, 2], f"objects on frame {f}"
        for o, m in expected[f].items():
            assert np.array_equal(got[f][o], m), f"frame {f} object {o}"
    assert any(not np.array_equal(got[f][1], pristine[f][1]) for f in range(t, FRAMES))
    states = {p.name for p in (out / "_states" / "clip").iterdir()}
    assert f"fix-s001-f{t:08d}.state" in states


def _same(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> bool:
    return sorted(a) == sorted(b) and all(np.array_equal(a[o], b[o]) for o in a)
