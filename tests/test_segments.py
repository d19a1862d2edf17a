"""Parallel segments and discovery through ``sam-batch run``: real sam2, real Ray.

S = 1, 2 and 3 segments of one video must give structurally valid datasets
(every frame of every object, one row per (frame, object), a tracks table that
agrees with the masks and names the local tracks it was stitched from), S = 1
must still equal one uninterrupted pass, and a video without prompts runs in
discovery mode. Random weights make the masks meaningless but the structure
and the identity bookkeeping are exactly what a trained model gets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from sam_batch.config import JobConfig
from sam_batch.dataset.reader import Dataset
from sam_batch.dataset.rle import encode, to_coco
from sam_batch.driver.job import run
from sam_batch.evaluation.metrics.identity import boundary_id_metrics
from sam_batch.finish.segments import Segment, owned_ranges
from sam_batch.plan.chunks import plan_video
from sam_batch.plan.prompts import prompts_from_dicts
from sam_batch.synthetic import (
    SceneConfig,
    box_prompt,
    first_frame_prompts,
    generate,
    make_scene,
    render,
    step_away,
    write_mp4,
)
from sam_batch.track.frames import VideoFrames
from sam_batch.track.model import load_model
from sam_batch.track.state import MemoryState
from sam_batch.track.tracker import ChunkTracker

pytestmark = pytest.mark.slow

FRAMES, OVERLAP = 30, 4
#: Random weights score low: let every proposal through so discovery has work.
PERMISSIVE = {"pred_iou_thresh": 0.0, "stability_thresh": 0.0, "points_per_side": 4}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("segments")
    clip = generate(3, width=64, height=48, num_frames=FRAMES, num_objects=2, enter_leave=False)
    path = write_mp4(clip, folder / "v.mp4", gop_size=5).path
    return path, [{**p, "frame": 0} for p in first_frame_prompts(clip, "box")]


def _config(manifest: Path, out: Path, **kw) -> JobConfig:
    return JobConfig(manifest=str(manifest), output=str(out), random_weights=True,
                     image_size=256, chunk_frames=5, overlap=OVERLAP, sparse_step=4, workers=2,
                     cpus_per_worker=1, progress="off", **kw)


def _manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _by_frame(ds: Dataset, video_id: str) -> dict[int, dict[int, str]]:
    out: dict[int, dict[int, str]] = {}
    for r in ds.masks(video_id).to_pylist():
        out.setdefault(r["frame_idx"], {})[r["obj_id"]] = r["rle"]
    return out


def area(rle: str, height: int = 64, width: int = 96) -> int:
    return int(mask_utils.area(to_coco(rle, height, width)))


def iou(a: str, b: str, height: int = 64, width: int = 96) -> float:
    return float(mask_utils.iou([to_coco(a, height, width)], [to_coco(b, height, width)],
                                [0])[0][0])


def assert_valid(ds: Dataset, video_id: str, frames: int, segments: int) -> list[dict]:
    """Every frame of every object once; tracks agree with masks; sources name segments."""
    rows = ds.masks(video_id).to_pylist()
    tracks = ds.tracks(video_id).to_pylist()
    ids = sorted(t["obj_id"] for t in tracks)
    assert len(set(ids)) == len(ids) and ids, "global ids must be unique"
    keys = [(r["frame_idx"], r["obj_id"]) for r in rows]
    assert len(set(keys)) == len(keys), "two rows for one (frame, object)"
    assert {o for _, o in keys} == set(ids), "masks and tracks name other objects"
    for t in tracks:
        present = [r["frame_idx"] for r in rows if r["obj_id"] == t["obj_id"] and r["area"]]
        assert t["frames_present"] == len(present)
        if present:
            assert (t["first_frame"], t["last_frame"]) == (min(present), max(present))
        used = {int(s.split(":")[0]) for s in t["sources"]}
        assert used <= set(range(segments)) and t["sources"] == sorted(t["sources"])
    assert ds.video(video_id)["status"] == "ok"
    assert not list((Path(ds.url) / "_staging").glob("**/*.parquet")), "staging left behind"
    return tracks


def test_one_two_and_three_segments(ray_local, video, tmp_path):
    path, prompts = video
    manifest = _manifest(tmp_path / "m.jsonl", [{"video": str(path), "video_id": "v",
                                                 "prompts": prompts}])
    datasets = {}
    for s in (1, 2, 3):
        summary = run(_config(manifest, tmp_path / f"s{s}", segments=s))
        assert summary.ok, summary.text()
        ds = datasets[s] = Dataset(str(tmp_path / f"s{s}"))
        tracks = assert_valid(ds, "v", FRAMES, s)
        # Prompted objects keep the user's ids in every segment (seeded by the sparse
        # pass), and every frame of each has a row.
        assert [t["obj_id"] for t in tracks] == [1, 2]
        assert all(len(t["sources"]) == s for t in tracks)
        by_frame = _by_frame(ds, "v")
        assert sorted(by_frame) == list(range(FRAMES))
        assert all(sorted(objs) == [1, 2] for objs in by_frame.values())

    # S = 1 equals one uninterrupted pass of the tracker over the whole video.
    torch.set_num_threads(1)
    model = load_model(_config(manifest, tmp_path).model_spec())
    frames = VideoFrames.open(str(path))
    tracker = ChunkTracker(model)
    single = tracker.track(tracker.start(frames, prompts_from_dicts(prompts)), frames, FRAMES)
    reference = {out.frame_idx: {o: encode(m).rle for o, m in zip(out.obj_ids, out.masks,
                                                                  strict=True)}
                 for out in single}
    assert _by_frame(datasets[1], "v") == reference

    # The boundary metric scores ids near each boundary against the single pass.
    for s in (2, 3):
        plan = plan_video("v", FRAMES, 5, s, OVERLAP)
        starts = [seg.start for seg in plan.segments[1:]]
        metrics = boundary_id_metrics(_by_frame(datasets[s], "v"), reference, 48, 64, starts,
                                      OVERLAP)
        assert set(metrics.per_boundary) == set(starts)
        assert metrics.overall.id_switches == 0  # pinned ids never switch
        # Seeds carry the user's ids and the same model tracks the same pixels: near
        # every boundary each object is matched to itself in the single pass.
        assert metrics.overall.idf1 == 1.0, (s, metrics.overall)
        assert metrics.overall.frames == len(set().union(
            *(range(b - OVERLAP, b + OVERLAP + 1) for b in starts)))


def test_seeded_segments_keep_hidden_objects_and_every_prompt(ray_local, tmp_path):
    """Seeds are the sparse pass's memory: the user's prompts stay conditioning frames in
    every segment, and an object off-screen at a segment start keeps its id and rows."""
    frames, hidden_at = 48, 26  # S = 3, overlap 6: segments start at frames 10 and 26
    clip = render(step_away(make_scene(SceneConfig(
        seed=4, width=96, height=64, num_frames=frames, num_objects=2, enter_leave=False)),
        {1: [hidden_at]}))
    assert not clip.masks[1][hidden_at].any() and clip.masks[1][hidden_at + 8].any()
    path = write_mp4(clip, tmp_path / "away.mp4", gop_size=8).path
    prompts = [{**p, "frame": 0} if p["obj_id"] == 1 else p  # object 2 prompted on frame 13
               for p in (box_prompt(k, f, clip.masks[k][f]) for k, f in ((1, 0), (2, 13)))]
    manifest = _manifest(tmp_path / "m.jsonl", [{"video": str(path), "video_id": "away",
                                                 "prompts": prompts}])
    out = {}
    for s in (1, 3):
        summary = run(JobConfig(manifest=str(manifest), output=str(tmp_path / f"s{s}"),
                                model="sam-batch-tiny", chunk_frames=8, overlap=6,
                                sparse_step=4, segments=s, workers=2, cpus_per_worker=1,
                                progress="off"))
        assert summary.ok, summary.text()
        ds = Dataset(str(tmp_path / f"s{s}"))
        assert_valid(ds, "away", frames, s)
        out[s] = _by_frame(ds, "away")
        # Every object has a row on every frame (tracking starts at the first prompt).
        assert all(sorted(out[s].get(f, {})) == [1, 2] for f in range(frames)), s

    # Where the single pass finds object 1 again after it came back, so does the
    # segmented run, under its own id, with much the same mask.
    back = [f for f in range(hidden_at + 3, frames) if area(out[1][f][1]) > 0]
    assert len(back) >= 8, back  # the model does find it again
    found = [f for f in back if area(out[3][f][1]) > 0]
    assert len(found) >= 0.9 * len(back), (back, found)
    ious = [iou(out[3][f][1], out[1][f][1]) for f in back]
    assert np.mean(ious) > 0.7, ious

    # Every state of every segment holds the user's prompts as its only conditioning
    # frames: object 1's frame-0 prompt too, long after frame 0. No predicted mask
    # became a conditioning frame.
    states = sorted((tmp_path / "s3" / "_states").glob("**/*.state"))
    segments = set()
    for file in states:
        state = MemoryState.from_bytes(file.read_bytes())
        segments.add(state.meta.segment)
        assert {o.obj_id: sorted(o.cond) for o in state.objects} == {1: [0], 2: [13]}, file
    assert segments == {0, 1, 2}


def test_discovery_mode_tracks_videos_without_prompts(ray_local, video, tmp_path):
    path, _ = video
    manifest = _manifest(tmp_path / "m.jsonl", [{"video": str(path), "video_id": "auto"}])
    summary = run(_config(manifest, tmp_path / "off"))
    assert not summary.ok and "--discover" in summary.failed[0]["error"]

    summary = run(_config(manifest, tmp_path / "on", segments=2, discover="every:10",
                          discovery_options=PERMISSIVE))
    assert summary.ok, summary.text()
    ds = Dataset(str(tmp_path / "on"))
    tracks = assert_valid(ds, "auto", FRAMES, 2)
    assert {t["origin"] for t in tracks} == {"discovered"}
    assert [t["obj_id"] for t in tracks] == list(range(1, len(tracks) + 1))
    # A discovered object's rows begin on a keyframe of its segment, or where its
    # segment's owned frames begin (the stitched output takes one side of an overlap).
    plan = plan_video("auto", FRAMES, 5, 2, OVERLAP)
    stitched = [Segment(seg.index, seg.start, seg.end) for seg in plan.segments]
    starts = {lo for lo, _ in owned_ranges(stitched)}
    starts |= {f for seg in plan.segments for f in range(seg.start, seg.end, 10)}
    first_rows: dict[int, int] = {}
    for r in ds.masks("auto").to_pylist():
        first_rows.setdefault(r["obj_id"], r["frame_idx"])
    assert set(first_rows.values()) <= starts
