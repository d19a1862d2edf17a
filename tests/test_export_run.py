"""Every export on a dataset that ``sam-batch run`` produced, checked back against its masks.

``test_export.py`` pins each format's rules on a hand-built dataset; this runs
the real pipeline (sam2 with random weights, Ray, Parquet) and the
``sam-batch export`` command, and reads every output back: PNG pixels equal
the masks, the JSON decodes with pycocotools, videos open with PyAV with every
frame, redacted and cut-out pixels differ from the source only where a mask is.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sam_batch.cli import main
from sam_batch.dataset.reader import Dataset
from sam_batch.dataset.rle import decode
from sam_batch.media.decode import read_frames
from sam_batch.synthetic import write_sample

pytestmark = pytest.mark.slow
FRAMES, H, W = 8, 64, 96


@pytest.fixture(scope="module")
def produced(tmp_path_factory) -> tuple[Path, Path, dict[int, dict[int, np.ndarray]]]:
    """(dataset, source video, {frame: {obj: mask}}) from a real ``sam-batch run``."""
    root = tmp_path_factory.mktemp("export_run")
    video, manifest = write_sample(root / "input", num_frames=FRAMES, width=W, height=H)
    out = root / "dataset"
    assert main(["run", "--manifest", str(manifest), "--output", str(out), "--random-weights",
                 "--image-size", "128", "--chunk-frames", "4", "--workers", "1",
                 "--progress", "off"]) == 0
    masks: dict[int, dict[int, np.ndarray]] = {}
    for r in Dataset(str(out)).masks("sample").to_pylist():
        masks.setdefault(r["frame_idx"], {})[r["obj_id"]] = decode(r["rle"], H, W)
    assert sorted(masks) == list(range(FRAMES))
    return out, video, masks


def export(dataset: Path, fmt: str, out: Path, *options: str) -> None:
    argv = ["export", str(dataset), "--format", fmt, "--out", str(out)]
    for o in options:
        argv += ["-o", o]
    assert main(argv) == 0


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def test_davis_and_per_object_pngs_equal_the_masks(produced, tmp_path):
    dataset, _, masks = produced
    export(dataset, "davis", tmp_path / "davis")
    export(dataset, "per-object", tmp_path / "sav")
    for t, objs in masks.items():
        label = np.asarray(Image.open(tmp_path / "davis" / "sample" / f"{t:05d}.png"))
        expected = np.zeros((H, W), np.uint8)
        for obj in sorted(objs, reverse=True):  # the lower id wins on overlap
            expected[objs[obj]] = obj
        assert (label == expected).all(), t
        for obj, m in objs.items():
            png = tmp_path / "sav" / "sample" / f"{obj:03d}" / f"{t:05d}.png"
            assert (np.asarray(Image.open(png)) == m).all(), (obj, t)  # values 0/1


def test_ytvis_json_decodes_with_pycocotools_to_the_masks(produced, tmp_path):
    dataset, _, masks = produced
    export(dataset, "ytvis", tmp_path / "ann.json")
    ann = json.loads((tmp_path / "ann.json").read_text())
    assert len(ann["videos"]) == 1 and ann["videos"][0]["length"] == FRAMES
    assert sorted(a["obj_id"] for a in ann["annotations"]) == sorted(masks[0])
    for a in ann["annotations"]:
        obj = a["obj_id"]
        for t, seg in enumerate(a["segmentations"]):
            if seg is None:
                assert not masks[t][obj].any()
                continue
            m = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
            assert (m.astype(bool) == masks[t][obj]).all(), (obj, t)


def test_videos_open_with_every_frame_and_redact_cutout_touch_only_masks(produced, tmp_path):
    dataset, video, masks = produced
    source = [rgb for _, rgb in read_frames(str(video), 0, FRAMES)]
    export(dataset, "overlay", tmp_path / "overlay")
    assert len(frames_of(tmp_path / "overlay" / "sample.mp4")) == FRAMES
    export(dataset, "overlay", tmp_path / "still", "encoding=lossless", "stills=[3]")
    still = np.asarray(Image.open(tmp_path / "still" / "sample-frame00003.png"))
    assert (still == frames_of(tmp_path / "still" / "sample.mp4")[3]).all()
    export(dataset, "redact", tmp_path / "redact", "encoding=lossless", "objects=[1]")
    export(dataset, "cutout", tmp_path / "cutout", "encoding=lossless", "objects=[1]",
           "background=#00ff00")
    redacted = frames_of(tmp_path / "redact" / "sample.mp4")
    cut = frames_of(tmp_path / "cutout" / "sample.mp4")
    assert len(redacted) == len(cut) == FRAMES
    inside = 0
    for t in range(FRAMES):
        m = masks[t].get(1, np.zeros((H, W), bool))
        assert (redacted[t][~m] == source[t][~m]).all(), f"frame {t}: redact changed outside"
        inside += int((redacted[t][m] != source[t][m]).any(axis=-1).sum())
        assert (cut[t][m] == source[t][m]).all() and (cut[t][~m] == [0, 255, 0]).all(), t
    assert inside > 0 or not any(masks[t].get(1, np.zeros(1)).any() for t in masks)


def test_stats_areas_equal_the_masks(produced, tmp_path):
    dataset, _, masks = produced
    export(dataset, "stats", tmp_path / "stats.csv")
    with open(tmp_path / "stats.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(objs) for objs in masks.values())
    for r in rows:
        assert int(r["area"]) == int(masks[int(r["frame_idx"])][int(r["obj_id"])].sum())
    plot = Image.open(tmp_path / "stats_plots" / "sample.png")  # the area-over-time plot
    assert plot.size[0] > 100 and plot.size[1] > 100
