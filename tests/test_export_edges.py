"""Video exports at the edges: odd frame sizes, and one video that cannot be exported.

H.264 in yuv420p (the default of overlay, cutout and redact) takes even sizes
only: a 317x241 source is written at 318x242, the last column and row
repeated, so pixel coordinates are unchanged and the export says so. A video
whose source is gone fails alone: every other video is exported and the
command exits 1, as ``sam-batch run`` does when some videos failed.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from datasetkit import clip_video, finish, write_video

from sam_batch.export import export
from sam_batch.synthetic import generate

W, H, T = 317, 241, 5


def write_odd_video(path: Path) -> np.ndarray:
    """A lossless ffv1 video of ``W`` x ``H`` (no 4:2:0 limit on its size); its frames."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (T, H, W, 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = W, H, "bgr0"
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    return frames


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("edges") / "dataset"
    sources = root.parent / "sources"
    write_odd_video(sources / "odd.mkv")
    mask = np.zeros((T, H, W), bool)
    mask[:, 100:160, 50:140] = True
    write_video(root, "odd", {1: mask}, video_path=sources / "odd.mkv", fps=24.0)
    clip_video(root, "even", generate(5, width=48, height=32, num_frames=6, num_objects=2))
    gone = sources / "gone.mkv"
    write_odd_video(gone)
    write_video(root, "gone", {1: mask}, video_path=gone, fps=24.0)
    gone.unlink()  # its masks are in the dataset, its source is not
    finish(root)
    return root


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


@pytest.mark.parametrize("fmt", ["overlay", "cutout", "redact"])
def test_odd_sized_video_is_padded_by_one_pixel_and_the_export_says_so(dataset, tmp_path,
                                                                       fmt, caplog):
    with caplog.at_level(logging.WARNING, logger="sam_batch"):
        result = export(str(dataset), fmt, str(tmp_path), videos=["odd", "even"])
    assert result.ok and result.videos == ("odd", "even")
    frames = frames_of(tmp_path / "odd.mp4")
    assert len(frames) == T
    assert frames[0].shape == (H + 1, W + 1, 3)
    # The added column and row repeat the edge (up to H.264's loss).
    assert np.abs(frames[0][:, W].astype(int) - frames[0][:, W - 1]).mean() < 12
    assert "317x241 frames are written as 318x242" in caplog.text
    assert frames_of(tmp_path / "even.mp4")[0].shape == (32, 48, 3)


def test_lossless_encoding_keeps_an_odd_size_exactly(dataset, tmp_path):
    result = export(str(dataset), "redact", str(tmp_path), videos=["odd"], encoding="ffv1",
                    objects=[99])  # no such object: the frames pass through untouched
    assert result.ok
    source = frames_of(dataset.parent / "sources" / "odd.mkv")
    assert [f.tolist() for f in frames_of(tmp_path / "odd.mkv")] == [f.tolist() for f in source]


def test_a_video_that_cannot_be_exported_is_reported_and_the_others_are_exported(dataset,
                                                                                  tmp_path):
    for fmt in ("cutout", "redact"):
        result = export(str(dataset), fmt, str(tmp_path / fmt))
        assert result.videos == ("even", "odd")
        assert [v for v, _ in result.failed] == ["gone"]
        assert "gone.mkv" in result.failed[0][1]
        assert sorted(p.name for p in (tmp_path / fmt).iterdir()) == ["even.mp4", "odd.mp4"]

    cli = subprocess.run(
        [sys.executable, "-m", "sam_batch.cli", "export", str(dataset), "--format", "overlay",
         "--out", str(tmp_path / "overlay")],
        capture_output=True, text=True, timeout=300,
    )
    assert cli.returncode == 1, cli.stderr[-2000:]
    assert "exported 2 video(s) as overlay" in cli.stdout and "1 failed" in cli.stdout
    assert "failed gone:" in cli.stdout
    assert "written as 318x242" in cli.stderr
    assert sorted(p.name for p in (tmp_path / "overlay").iterdir()) == ["even.mp4", "odd.mp4"]
