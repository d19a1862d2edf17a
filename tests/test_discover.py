"""Discovery's filters and life cycle, the sparse pass's frames, and their config.

Pure functions on masks the tests draw: what becomes a new object, when an
object is confirmed, lost and retired, which frames a sparse pass tracks.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam_batch.config import JobConfig
from sam_batch.errors import ConfigError
from sam_batch.plan.chunks import SPARSE, sparse_indices, sparse_plan
from sam_batch.plan.discovery import (
    CONFIRMED,
    LOST,
    RETIRED,
    TENTATIVE,
    DiscoverySettings,
    Lifecycle,
    parse_discover,
)
from sam_batch.track.discovery import Proposal, select_new
from sam_batch.track.frames import ArrayFrames, SparseFrames


def box(y0: int, y1: int, x0: int, x1: int, size: int = 20) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_proposals_explained_by_live_tracks_are_dropped():
    live = [box(0, 10, 0, 10)]
    shifted = Proposal(box(1, 11, 1, 11), 0.9)  # IoU 81/119 = 0.68 with the live track
    inside = Proposal(box(2, 6, 2, 6), 0.9)  # small, wholly inside a live track
    new = Proposal(box(12, 18, 12, 18), 0.8)
    kept = select_new([shifted, inside, new], live, DiscoverySettings())
    assert [p.score for p in kept] == [0.8]


def test_proposals_do_not_duplicate_each_other_and_respect_max_new():
    a, a_again = Proposal(box(0, 8, 0, 8), 0.9), Proposal(box(0, 8, 0, 9), 0.85)
    b, c = Proposal(box(10, 14, 10, 14), 0.8), Proposal(box(15, 19, 0, 4), 0.7)
    assert [p.score for p in select_new([a, a_again, b, c], [], DiscoverySettings())] == [
        0.9, 0.8, 0.7]
    assert len(select_new([a, b, c], [], DiscoverySettings(max_new=2))) == 2
    assert select_new([Proposal(np.zeros((20, 20), bool), 1.0)], [], DiscoverySettings()) == []


def test_life_cycle_confirms_loses_retires_and_keeps_what_was_confirmed():
    life = Lifecycle({}, DiscoverySettings(confirm_after=2, retire_after=3))
    life.born(5, 0, "discovered")  # seen twice, then gone for good
    life.born(6, 0, "discovered")  # gone at once: noise
    life.born(1, 0, "prompt")  # the user's object never retires
    seen = {5: [1, 1, 0, 0, 0], 6: [1, 0, 0, 0, 0], 1: [1, 0, 0, 0, 0]}
    statuses = {o: [life.observe(o, f, bool(v)) for f, v in enumerate(vs)]
                for o, vs in seen.items()}
    assert statuses[5] == [TENTATIVE, CONFIRMED, LOST, LOST, RETIRED]
    assert statuses[6] == [TENTATIVE, RETIRED, RETIRED, RETIRED, RETIRED]
    assert statuses[1] == [CONFIRMED, LOST, LOST, LOST, LOST]
    assert life.retired_ids() == [5, 6]
    assert life.kept_ids() == {1, 5}
    assert life.observe(1, 5, True) == CONFIRMED  # a lost object found again


def test_keyframes_are_segment_relative_and_include_the_segment_start():
    s = DiscoverySettings(every=10)
    assert s.keyframes(segment_start=42, start=42, end=60) == [42, 52]
    assert s.keyframes(segment_start=42, start=60, end=80) == [62, 72]
    assert DiscoverySettings().keyframes(0, 0, 100) == [0]
    assert DiscoverySettings().keyframes(0, 16, 32) == []


@pytest.mark.parametrize("text", ["every", "every:0", "every:x", "sometimes", "every:-3"])
def test_bad_discover_values_are_config_errors(text):
    with pytest.raises(ConfigError, match="discover must be"):
        parse_discover(text)


def test_discovery_options_are_checked_by_name():
    assert parse_discover("every:5", {"max_new": 2}).max_new == 2
    with pytest.raises(ConfigError, match=r"unknown discovery_options.*max_nwe"):
        parse_discover("every:5", {"max_nwe": 2})
    config = JobConfig(output="o", videos=["v.mp4"], random_weights=True, discover="every:0")
    with pytest.raises(ConfigError):
        config.validate()
    config = JobConfig(output="o", videos=["v.mp4"], random_weights=True, sparse_step=-1)
    with pytest.raises(ConfigError, match="sparse_step"):
        config.validate()


def test_discovery_settings_change_the_job_fingerprint():
    a = JobConfig(output="o", videos=["v"], random_weights=True)
    b = JobConfig(output="o", videos=["v"], random_weights=True, discover="every:8")
    assert a.fingerprint() != b.fingerprint()


def test_sparse_pass_tracks_samples_prompts_and_segment_starts():
    assert sparse_indices(50, 10, [5, 7], [20, 37]) == [5, 7, 15, 20, 25, 35, 37]
    assert sparse_indices(50, 10, [30], [12, 37]) == [30, 37]  # start 12 precedes every prompt
    plan = sparse_plan("v", 7, chunk_frames=3)
    assert plan.index == SPARSE and [(c.start, c.end) for c in plan.chunks] == [
        (0, 3), (3, 6), (6, 7)]


def test_sparse_frames_renumber_and_skip():
    video = np.arange(10, dtype=np.uint8)[:, None, None, None].repeat(3, 3)
    sparse = SparseFrames(ArrayFrames(video), [1, 4, 5, 9])
    assert sparse.num_frames == 4
    assert [(i, int(rgb[0, 0, 0])) for i, rgb in sparse.read(0, 4)] == [
        (0, 1), (1, 4), (2, 5), (3, 9)]
    assert list(sparse.read(3, 3)) == []


def test_sparse_frames_seek_past_gops_and_decode_runs_at_once(tmp_path):
    """On a video, samples come in runs that seek past whole GOPs; decoded by several
    threads or by one, they are the same frames in the same order."""
    from sam_batch.synthetic import generate, write_mp4
    from sam_batch.track.frames import VideoFrames

    clip = generate(2, width=64, height=48, num_frames=200, num_objects=1)
    frames = VideoFrames.open(str(write_mp4(clip, tmp_path / "v.mp4", gop_size=10).path))
    indices = list(range(3, 200, 30))
    one = [(i, rgb.copy()) for i, rgb in SparseFrames(frames, indices).read(0, len(indices))]
    assert len(SparseFrames(frames, indices).runs(0, len(indices))) == len(indices)
    many = list(SparseFrames(frames, indices, workers=3).read(1, len(indices)))
    assert [i for i, _ in many] == list(range(1, len(indices)))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(one[1:], many, strict=True))
    direct = {i: rgb for i, rgb in frames.read(0, 200) if i in indices}
    assert all(np.array_equal(direct[indices[i]], rgb) for i, rgb in one)
