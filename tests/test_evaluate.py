"""Evaluation promises: DAVIS J&F of a dataset, as ``sam_batch.evaluation.metrics`` scores it.

Small cases are computed by hand in the comment above their assertion; the
synthetic case checks that streaming frame by frame gives exactly what
``metrics.evaluate_video`` gives on the whole ``[T, H, W]`` stacks.
"""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import numpy as np
import pytest
from datasetkit import BuiltDataset, clip_video, finish, gt_pngs, write_failed, write_video
from PIL import Image
from scipy import ndimage

from sam_batch.dataset.reader import Dataset
from sam_batch.errors import SamBatchError
from sam_batch.evaluation.evaluate import EvalReport, evaluate, identity_f1
from sam_batch.evaluation.metrics import evaluate_video
from sam_batch.export import export
from sam_batch.synthetic import davis_palette, generate


def squares(frames: int, size: int, boxes: dict[int, tuple[int, int, int]]) -> dict:
    """``{obj_id: [T, size, size]}`` with a ``side`` square at ``(y, x)`` on every frame."""
    out = {}
    for k, (y, x, side) in boxes.items():
        m = np.zeros((frames, size, size), bool)
        m[:, y : y + side, x : x + side] = True
        out[k] = m
    return out


def write_pngs(folder: Path, masks: dict[int, np.ndarray], void: np.ndarray | None = None) -> Path:
    """DAVIS palette PNGs of non-overlapping masks (and 255 where ``void``)."""
    folder.mkdir(parents=True)
    frames, height, width = next(iter(masks.values())).shape
    for t in range(frames):
        labels = np.zeros((height, width), np.uint8)
        for k, m in masks.items():
            labels[m[t]] = k
        if void is not None:
            labels[void] = 255
        image = Image.fromarray(labels, mode="P")
        image.putpalette(davis_palette())
        image.save(folder / f"{t:05d}.png")
    return folder.parent


def dataset(root: Path, videos: dict[str, dict[int, np.ndarray]]) -> str:
    for video_id, masks in videos.items():
        write_video(root, video_id, masks)
    finish(root)
    return str(root)


@pytest.fixture(autouse=True)
def streaming_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluation must stream: ``Dataset.masks`` (every row of a video at once) is off limits."""

    def refuse(*args, **kwargs):
        raise AssertionError("evaluate loaded all masks with Dataset.masks")

    monkeypatch.setattr(Dataset, "masks", refuse)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A dataset equal to a synthetic clip's ground truth, and that truth as PNGs."""
    root = tmp_path_factory.mktemp("eval")
    clip = generate(11, width=64, height=48, num_frames=12, num_objects=3)
    built = clip_video(root / "pred", "clip", clip)
    finish(root / "pred")
    gt = gt_pngs(root / "gt", BuiltDataset(str(root / "pred"), {"clip": built}))
    return clip, str(root / "pred"), str(gt)


def test_prediction_equal_to_the_ground_truth_scores_one(synthetic):
    clip, pred, gt = synthetic
    report = evaluate(pred, gt)
    assert report.overall.jf == 1.0 and report.overall.j.recall == 1.0
    assert report.overall.j.decay == 0.0 and report.overall.f.mean == 1.0
    assert sorted(report.videos["clip"].objects) == clip.obj_ids
    assert report.frames == {"clip": 10}, "12 frames less the first and the last"
    assert report.missing == ()


def test_one_object_shifted_by_one_and_two_pixels_scores_j_by_hand(tmp_path):
    gt = squares(5, 32, {1: (10, 10, 10), 2: (24, 2, 6)})
    one = {**gt, 1: np.roll(gt[1], 1, axis=2)}
    two = {**gt, 1: np.roll(gt[1], 2, axis=2)}
    truth = write_pngs(tmp_path / "gt" / "v", gt)
    r1 = evaluate(dataset(tmp_path / "one", {"v": one}), str(truth))
    r2 = evaluate(dataset(tmp_path / "two", {"v": two}), str(truth))
    # One pixel right: intersection 10 x 9 = 90, union 100 + 100 - 90 = 110, J = 9/11 on
    # every frame; the boundary moves 1 pixel, within ceil(0.008 * hypot(32, 32)) = 1: F = 1.
    obj = r1.videos["v"].objects[1]
    assert obj.j.mean == pytest.approx(9 / 11) and obj.f.mean == 1.0
    assert obj.j.recall == 1.0 and obj.j.decay == pytest.approx(0.0)
    # Two pixels right: 80 / 120 = 2/3.
    assert r2.videos["v"].objects[1].j.mean == pytest.approx(2 / 3)
    # Object 2 is exact; the video and the dataset average the two objects.
    assert r1.videos["v"].objects[2].jf == 1.0
    assert r1.videos["v"].mean.j.mean == pytest.approx((9 / 11 + 1) / 2)
    assert r1.overall.jf == pytest.approx(((9 / 11 + 1) / 2 + 1) / 2)
    assert r1.frames == {"v": 3}


def test_streaming_scores_equal_metrics_evaluate_video_on_whole_stacks(synthetic, tmp_path):
    clip, _, gt = synthetic
    pred = {k: m.copy() for k, m in clip.masks.items()}
    pred[1] = np.stack([ndimage.binary_erosion(m) for m in pred[1]])  # thinner
    pred[2][3:7] = False  # lost for four frames
    pred[3] = np.roll(pred[3], (2, -1), axis=(1, 2))  # off by a few pixels
    url = dataset(tmp_path / "pred", {"clip": pred})
    report = evaluate(url, gt)
    reference = evaluate_video(clip.masks, pred)
    for k, jf in reference.objects.items():
        got = report.videos["clip"].objects[k]
        for ours, theirs in ((got.j, jf.j), (got.f, jf.f)):
            assert (ours.mean, ours.recall, ours.decay) == pytest.approx(
                (theirs.mean, theirs.recall, theirs.decay), abs=1e-12
            )
    assert report.overall.jf == pytest.approx(reference.mean.jf, abs=1e-12)
    assert report.overall.jf < 0.95, "the perturbations are seen"


def test_ground_truth_may_be_another_dataset(synthetic, tmp_path):
    clip, _, gt = synthetic
    pred = {k: np.roll(m, 1, axis=1) for k, m in clip.masks.items()}
    url = dataset(tmp_path / "pred", {"clip": pred})
    truth_ds = dataset(tmp_path / "truth", {"clip": clip.masks})
    assert evaluate(url, truth_ds).to_dict()["videos"] == evaluate(url, gt).to_dict()["videos"]


def test_a_missing_object_scores_zero_and_an_extra_one_is_refused(tmp_path):
    gt = squares(4, 16, {1: (2, 2, 4), 2: (9, 9, 4)})
    truth = str(write_pngs(tmp_path / "gt" / "v", gt))
    # Object 2 never predicted: J = F = 0 on both scored frames, so its J&F is 0.
    report = evaluate(dataset(tmp_path / "lacks", {"v": {1: gt[1]}}), truth)
    assert report.videos["v"].objects[2].jf == 0.0 and report.videos["v"].objects[1].jf == 1.0
    extra = {**gt, 7: gt[1]}
    url = dataset(tmp_path / "extra", {"v": extra})
    with pytest.raises(SamBatchError, match=r"predicted objects \[7\] are not in the ground"):
        evaluate(url, truth)
    assert evaluate(url, truth, ignore_extra=True).overall.jf == 1.0


def test_void_pixels_count_for_neither_j_nor_f(tmp_path):
    gt = squares(3, 16, {1: (4, 4, 6)})
    void = np.zeros((16, 16), bool)
    void[4:10, 8:10] = True  # the right third of the square (and nothing else)
    truth = str(write_pngs(tmp_path / "gt" / "v", gt, void=void))
    pred = {1: gt[1]}  # the whole square: wrong only inside the void (J would be 24/36)
    assert evaluate(dataset(tmp_path / "pred", {"v": pred}), truth).overall.jf == 1.0


def test_exclusive_lets_the_lower_id_win_overlapping_predictions(tmp_path):
    gt = squares(3, 16, {1: (2, 2, 4), 2: (2, 6, 4)})
    truth = str(write_pngs(tmp_path / "gt" / "v", gt))
    # Predicted object 1 covers both squares, object 2 is exact.
    url = dataset(tmp_path / "pred", {"v": {1: gt[1] | gt[2], 2: gt[2]}})
    # As stored: object 1 has J = 16 / 32 = 0.5, object 2 J = 1.
    kept = evaluate(url, truth).videos["v"].objects
    assert kept[1].j.mean == 0.5 and kept[2].j.mean == 1.0
    # Lower id wins: object 2 keeps no pixel, J = 0; object 1 is unchanged.
    won = evaluate(url, truth, exclusive=True).videos["v"].objects
    assert won[1].j.mean == 0.5 and won[2].j.mean == 0.0
    # ... which is what scoring the davis export of the prediction gives.
    export(url, "davis", str(tmp_path / "davis"))
    again = dataset(
        tmp_path / "again",
        {
            "v": {
                k: np.stack(
                    [
                        np.asarray(Image.open(tmp_path / "davis" / "v" / f"{t:05d}.png")) == k
                        for t in range(3)
                    ]
                )
                for k in (1, 2)
            }
        },
    )
    assert (
        evaluate(again, truth).to_dict()["videos"]
        == evaluate(url, truth, exclusive=True).to_dict()["videos"]
    )


def test_a_video_the_prediction_lacks_or_failed_scores_empty_and_is_listed(tmp_path):
    gt = squares(3, 16, {1: (2, 2, 4)})
    write_pngs(tmp_path / "gt" / "a", gt)
    write_pngs(tmp_path / "gt" / "b", gt)
    truth = str(write_pngs(tmp_path / "gt" / "c", gt))
    root = tmp_path / "pred"
    write_video(root, "a", gt)
    write_failed(root, "b")
    finish(root)
    report = evaluate(str(root), truth)
    assert report.missing == ("b", "c")
    assert report.videos["a"].mean.jf == 1.0 and report.videos["b"].mean.jf == 0.0
    assert report.overall.jf == pytest.approx(1 / 3)
    assert "missing from the prediction (scored empty): b, c" in report.table()
    assert evaluate(str(root), truth, videos=["a"]).overall.jf == 1.0


def test_report_is_json_and_a_readable_table(synthetic):
    _, pred, gt = synthetic
    report = evaluate(pred, gt)
    assert isinstance(report, EvalReport)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["overall"]["J&F"] == 1.0 and d["videos"]["clip"]["frames"] == 10
    assert set(d["videos"]["clip"]["objects"]) == {"1", "2", "3"}
    lines = report.table().splitlines()
    assert lines[0].split()[:3] == ["Sequence", "J&F-Mean", "J-Mean"]
    assert lines[1].split()[:2] == ["Global", "1.000"]
    assert [line.split()[0] for line in lines[2:]] == ["clip", "clip_1", "clip_2", "clip_3"]
    assert str(report) == report.table()


def test_ground_truth_on_s3(synthetic, s3):
    _, pred, gt = synthetic
    fs = fsspec.filesystem("s3", **s3.storage_options)
    fs.put(f"{gt}/clip", f"{s3.bucket}/gt/clip", recursive=True)
    report = evaluate(pred, s3.url("gt"), storage_options=s3.storage_options)
    assert report.overall.jf == 1.0 and report.frames == {"clip": 10}


def test_bad_ground_truth_is_a_clear_error(tmp_path):
    gt = squares(3, 16, {1: (2, 2, 4)})
    truth = str(write_pngs(tmp_path / "gt" / "v", gt))
    url = dataset(tmp_path / "pred", {"v": gt})
    with pytest.raises(SamBatchError, match=r"no ground truth for 'w'.*it has: v"):
        evaluate(url, truth, videos=["w"])
    small = dataset(tmp_path / "small", {"v": squares(3, 8, {1: (2, 2, 4)})})
    with pytest.raises(SamBatchError, match=r"predicted object 1 is 8x8, the ground truth 16x16"):
        evaluate(small, truth)
    Image.new("RGB", (16, 16)).save(tmp_path / "gt" / "v" / "00001.png")
    with pytest.raises(SamBatchError, match="RGB PNG; ground truth must be indexed"):
        evaluate(url, truth)
    with pytest.raises(SamBatchError, match="leave none"):
        evaluate(
            dataset(tmp_path / "short", {"v": {1: gt[1][:2]}}),
            str(write_pngs(tmp_path / "gt2" / "v", {1: gt[1][:2]})),
        )


def test_identity_f1_scores_discovered_ids_by_identity_not_by_number(tmp_path):
    """Discovery names objects itself: 7 and 9 for the truth's 1 and 2 is perfect; one
    track that jumps from object 1 to object 2 halfway is half right."""
    gt = squares(4, 16, {1: (2, 2, 4), 2: (9, 9, 4)})
    truth = str(write_pngs(tmp_path / "gt" / "v", gt))
    renamed = dataset(tmp_path / "renamed", {"v": {7: gt[1], 9: gt[2]}})
    assert identity_f1(renamed, truth) == 1.0
    jumps = np.concatenate([gt[1][:2], gt[2][2:]])
    # 4 detections of the one track: 2 right (tp), 2 wrong (fp); truth misses 2 + 4 = 6.
    assert identity_f1(dataset(tmp_path / "jumps", {"v": {7: jumps}}), truth) == pytest.approx(
        2 * 2 / (2 * 2 + 2 + 6))
    assert identity_f1(dataset(tmp_path / "none", {}), truth) == 0.0
