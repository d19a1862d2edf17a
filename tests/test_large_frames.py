"""An 8K video (7680x4320) runs with memory bounded by a few frames, not the video.

One RGB frame of 8K is 100 MB, its mask logits at full size 133 MB per object:
the job must decode, track and encode masks frame by frame. The test runs the
command in its own process tree, samples the peak RSS (``VmHWM``) of every
process in it, prints the largest (the tracker actor's), and holds it to a
bound of a handful of frames.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

W, H, FRAMES = 7680, 4320, 4
FRAME_MB = W * H * 3 / 2**20
#: Peak RSS allowed for any process of the job: start-up (torch, sam2, Ray) plus a
#: few 8K frames and one object's full-size logits, far below the video's frames.
BOUND_MB = 2600


def write_8k(path: Path) -> None:
    """A bright rectangle moving on a dark gradient, H.264 (fast preset)."""
    yy = np.linspace(0, 60, H, dtype=np.float32)[:, None, None]
    base = np.broadcast_to(yy, (H, W, 3)).astype(np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for t in range(FRAMES):
            frame = base.copy()
            x0 = 2000 + 200 * t
            frame[1500:2800, x0:x0 + 1800] = (230, 200, 40)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))


def peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def tree(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    parents[int(entry)] = next(int(x.split()[1]) for x in f
                                               if x.startswith("PPid:"))
            except (OSError, StopIteration):
                pass
    found, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def test_an_8k_video_is_tracked_with_memory_bounded_by_a_few_frames(tmp_path):
    video = tmp_path / "8k.mp4"
    write_8k(video)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": str(video), "video_id": "8k", "prompts": [
        {"obj_id": 1, "frame": 0, "box": [2000, 1500, 3800, 2800]}]}) + "\n")
    out = tmp_path / "ds"
    job = subprocess.Popen(
        [sys.executable, "-m", "sam_batch.cli", "run", "--manifest", str(manifest), "--output",
         str(out), "--random-weights", "--image-size", "128", "--chunk-frames", "2",
         "--workers", "1", "--cpus-per-worker", "1", "--progress", "off"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    peaks: dict[int, tuple[float, str]] = {}
    while job.poll() is None:
        for pid in tree(job.pid):
            mb = peak_rss_mb(pid)
            if mb > peaks.get(pid, (0.0, ""))[0]:
                try:
                    name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
                except OSError:
                    name = "?"
                peaks[pid] = (mb, name)
        time.sleep(0.2)
    _, stderr = job.communicate()
    assert job.returncode == 0, stderr[-3000:]
    top_mb, top_name = max(peaks.values())
    driver_mb = peaks.get(job.pid, (0.0, ""))[0]
    print(f"\n8K ({W}x{H}, {FRAMES} frames, {FRAME_MB:.0f} MB per RGB frame): peak RSS "
          f"{top_mb:.0f} MB in {top_name!r}, driver {driver_mb:.0f} MB; bound {BOUND_MB} MB")
    assert top_mb < BOUND_MB, (top_mb, top_name)
    table = pq.read_table(out / "masks")
    assert table.num_rows == FRAMES
    assert set(table["height"].to_pylist()) == {H} and set(table["width"].to_pylist()) == {W}
    assert min(table["area"].to_pylist()) > 0
