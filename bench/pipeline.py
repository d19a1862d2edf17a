"""How close one actor's host side lets a GPU run to its limit: sequential vs pipelined.

The model is a stand-in, named as such: ``StandInModel`` waits a fixed time per
frame (default 11 ms, SAM 2.1 hiera-T compiled at 1024 px on one A100, as its
authors report) and hands over masks at video resolution, thresholded and
column-major as a GPU hands them over in sam_batch. Everything else is the real
code: PyAV decode of an H.264 file the bench writes, sam2's preprocessing
(``prepare_frame``: PIL bicubic resize to 1024, normalise), pycocotools RLE of
every mask, ChunkMasks rows and a committed Parquet part.

- ``sequential``: the actor as it was: decode, resize, model, encode each mask
  (from the row-major masks a ``.cpu()`` of the logits gives), in turn, one thread.
- ``pipelined``: ``track/pipeline.py`` as the tracker uses it: decode on a thread,
  resize on a pool, model on its own thread, masks encoded on a pool behind it.
- ``pipelined, device-prepared``: the same, with frames prepared as a GPU actor
  prepares them by default (``track/preprocess.py``): the host only decodes, and
  the resize and normalisation (``track/resample.py``, Pillow's bytes) run on the
  device, so here inside the stand-in's wait; their time on a GPU is measured by
  ``bench/gpu.py``, not by this bench.

Per case it prints frames/s divided by the stand-in's limit (1 / latency) for each
side, the ratio of the host-prepared pipelined side to the sequential one, and each
host step's CPU cost per frame (CPU seconds, measured in the sequential run, so
other load on the machine does not inflate them), from which the cores one GPU
needs follow: ``cores = host ms per frame / model ms per frame`` (without the
resize's share when frames are prepared on the device). ``RESULT``'s
``fraction_of_limit`` is the device-prepared side's, as a GPU actor runs by default;
``host_prepared_fraction_of_limit`` the other's.

    python bench/pipeline.py --quick            # 720p, 1 object, 20 ms: < 5 minutes on 2 cores
    python bench/pipeline.py                    # 720p/1080p/4K x 1/5/20 objects, 11 ms
    python bench/pipeline.py --latency-ms 15.6  # B+ at 64 frames/s
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch

from sam_batch.dataset import rle
from sam_batch.dataset.writer import ChunkMasks, write_mask_part
from sam_batch.media.decode import read_frames
from sam_batch.media.storage import Location
from sam_batch.media.video import probe
from sam_batch.track.frames import prepare_frame
from sam_batch.track.pipeline import FramePrefetcher, MaskEncoder
from sam_batch.track.preprocess import FramePreparer

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "4K": (3840, 2160)}
IMAGE_SIZE = 1024  # every released SAM 2.1 model's input


def write_clip(path: Path, width: int, height: int, frames: int, fps: int = 30) -> Path:
    """Moving shapes over a gradient with a little noise: H.264 at a realistic bitrate."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:height, :width]
    base = np.stack([xx * 255 // width, yy * 255 // height,
                     (xx + yy) * 127 // (width + height)], -1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "g": "60", "preset": "veryfast"}
        for i in range(frames):
            img = base.copy()
            for k in range(3):
                cx = int((0.2 + 0.25 * k + 0.01 * i) % 1.0 * width)
                cy = int((0.3 + 0.2 * k) * height)
                r = height // (6 + k)
                img[max(0, cy - r):cy + r, max(0, cx - r):cx + r] = (40 * k, 200, 255 - 60 * k)
            img = np.clip(img + rng.integers(0, 8, img.shape), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


class StandInModel:
    """Not SAM 2: a fixed wait per frame and masks at video resolution, as a GPU hands them.

    Masks are ellipses that move from frame to frame (a cycle of 8 frames per object,
    made once), column-major like the tracker's (``rows`` gives them row-major, as a
    plain ``.cpu()`` of thresholded logits would, for the sequential side).
    """

    def __init__(self, latency_s: float, objects: int, width: int, height: int):
        self.latency_s = latency_s
        yy, xx = np.ogrid[:height, :width]
        self._masks = []
        for t in range(8):
            frame = []
            for k in range(objects):
                cx = (0.1 + 0.8 * ((k * 0.37 + t * 0.01) % 1.0)) * width
                cy = (0.1 + 0.8 * ((k * 0.61) % 1.0)) * height
                rx, ry = width / (8 + k % 5), height / (6 + k % 4)
                frame.append(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0)
            stacked = np.stack(frame)
            self._masks.append((stacked, np.ascontiguousarray(stacked.transpose(0, 2, 1))
                                .transpose(0, 2, 1)))
        self.scores = np.ones(objects, np.float32)
        self.obj_ids = tuple(range(1, objects + 1))

    def __call__(self, frame_idx: int, prepared: object, column_major: bool) -> np.ndarray:
        time.sleep(self.latency_s)  # a GPU's time: the host thread waits, holding no lock
        return self.masks(frame_idx, column_major)

    def masks(self, frame_idx: int, column_major: bool) -> np.ndarray:
        row_major, col_major = self._masks[frame_idx % 8]
        return col_major if column_major else row_major


def run_sequential(url: str, frames: int, model: StandInModel, out: Location,
                   steps: dict[str, float]) -> float:
    info = probe(url)
    rows = ChunkMasks("clip", 0)
    t0 = time.perf_counter()
    it: Iterator = read_frames(info, 0, frames)
    while True:  # CPU seconds per step (the process's: FFmpeg may decode on threads)
        a = time.process_time()
        item = next(it, None)
        if item is None:
            break
        idx, rgb = item
        b = time.process_time()
        prepared = prepare_frame(rgb, IMAGE_SIZE)
        c = time.process_time()
        masks = model(idx, prepared, column_major=False)
        d = time.process_time()
        encoded = [rle.encode(m) for m in masks]
        rows.add_encoded(idx, idx / 30, model.obj_ids, encoded, model.scores)
        e = time.process_time()
        steps["decode"] += b - a
        steps["prepare"] += c - b
        steps["encode (row-major masks)"] += e - d
    a = time.process_time()
    write_mask_part(out, rows, segment=0)
    steps["parquet"] += time.process_time() - a
    return time.perf_counter() - t0


def run_pipelined(url: str, frames: int, model: StandInModel, out: Location,
                  threads: int, where: str = "host") -> float:
    """``where``: the frames' preparation, as ``FramePreparer`` splits it; what it leaves
    for the device is the stand-in's (a device's step is inside its fixed wait)."""
    info = probe(url)
    rows = ChunkMasks("clip", 0)
    t0 = time.perf_counter()
    preparer = FramePreparer(IMAGE_SIZE, torch.device("cpu"), where)
    prefetch = FramePrefetcher(read_frames(info, 0, frames), preparer.host, workers=threads)
    masks_out = MaskEncoder(rows, workers=threads)
    try:
        for idx, prepared in prefetch:
            masks_out.add(idx, idx / 30, model.obj_ids, model(idx, prepared, column_major=True),
                          model.scores)
        masks_out.done()
    finally:
        prefetch.close()
        masks_out.close()
    write_mask_part(out, rows, segment=0)
    return time.perf_counter() - t0


def encode_column_major_ms(model: StandInModel, repeats: int = 8) -> float:
    """RLE of one frame's masks as the tracker hands them over (column-major), per frame."""
    t0 = time.process_time()
    for i in range(repeats):
        for m in model.masks(i, column_major=True):
            rle.encode(m)
    return (time.process_time() - t0) / repeats * 1000


def summarise(size: str, objects: int, args: argparse.Namespace, steps: dict[str, float],
              model: StandInModel, seconds: dict[str, float]) -> dict:
    limit = 1000 / args.latency_ms
    fps = {side: args.frames / s for side, s in seconds.items()}
    per = {k: v / args.frames * 1000 for k, v in steps.items()}
    col_ms = encode_column_major_ms(model)
    host_ms = per["decode"] + per["prepare"] + col_ms + per["parquet"]
    device_prepared_ms = host_ms - per["prepare"]
    return {"video": size, "objects": objects, "latency_ms": args.latency_ms,
            "sequential_fps": fps["sequential"], "pipelined_fps": fps["pipelined"],
            "device_prepared_fps": fps["device"],
            "fraction_of_limit": fps["device"] / limit,
            "host_prepared_fraction_of_limit": fps["pipelined"] / limit,
            "sequential_fraction_of_limit": fps["sequential"] / limit,
            "ratio": fps["pipelined"] / fps["sequential"], "host_ms_per_frame": per,
            "rle_column_major_ms_per_frame": col_ms,
            "cores_per_gpu": host_ms / args.latency_ms,
            "cores_per_gpu_device_prepared": device_prepared_ms / args.latency_ms}


def print_row(row: dict, limit: float) -> None:
    per, seq, pipe, dev = (row["host_ms_per_frame"], row["sequential_fps"],
                           row["pipelined_fps"], row["device_prepared_fps"])
    print(f"{row['video']:>6} {row['objects']:>4} | {seq:7.1f} {seq / limit:9.2f} | "
          f"{pipe:8.1f} {pipe / limit:10.2f} | {pipe / seq:5.2f} | {dev:12.1f} "
          f"{dev / limit:6.2f} | {'':>24}{per['decode']:6.1f}  {per['prepare']:6.1f}  "
          f"{per['encode (row-major masks)']:8.1f}  {row['rle_column_major_ms_per_frame']:8.1f}"
          f"  {per['parquet']:7.1f} | {row['cores_per_gpu']:19.1f} "
          f"{row['cores_per_gpu_device_prepared']:8.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="720p, 1 object, 20 ms stand-in")
    ap.add_argument("--latency-ms", type=float, default=11.0,
                    help="the stand-in model's time per frame (default: hiera-T on an A100)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--objects", nargs="+", type=int, default=[1, 5, 20])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads for each host step of the pipelined side")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.objects, args.latency_ms = ["720p"], [1], 20.0
        args.frames = max(args.frames, 150)
    latency = args.latency_ms / 1000
    limit = 1 / latency
    print(f"stand-in model: {args.latency_ms} ms a frame (limit {limit:.1f} frames/s); "
          f"{args.frames} frames a case; pipelined side {args.threads} threads a step; "
          f"{os.cpu_count()} CPU cores")
    header = (f"{'video':>6} {'obj':>4} | {'seq fps':>7} {'seq/limit':>9} | {'pipe fps':>8} "
              f"{'pipe/limit':>10} | {'ratio':>5} | {'dev-prep fps':>12} {'/limit':>6} | "
              f"host ms/frame one core: decode  resize  rle(row)  rle(col)  parquet | "
              f"cores/GPU host-prep dev-prep")
    print(header)
    print("-" * len(header))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            width, height = SIZES[size]
            url = str(write_clip(Path(tmp) / f"{size}.mp4", width, height, args.frames))
            for objects in args.objects:
                model = StandInModel(latency, objects, width, height)
                out = Location(str(Path(tmp) / f"out-{size}-{objects}"))
                steps = dict.fromkeys(("decode", "prepare", "encode (row-major masks)",
                                       "parquet"), 0.0)
                # Each side once to warm caches, then timed: pipelined, sequential.
                for where in ("host", "device"):
                    run_pipelined(url, min(8, args.frames), model, out, args.threads, where)
                pipe_s = run_pipelined(url, args.frames, model, out, args.threads, "host")
                dev_s = run_pipelined(url, args.frames, model, out, args.threads, "device")
                seq_s = run_sequential(url, args.frames, model, out, steps)
                row = summarise(size, objects, args, steps, model,
                                {"sequential": seq_s, "pipelined": pipe_s, "device": dev_s})
                results.append(row)
                print_row(row, limit)
    print("cores/GPU: host CPU per frame (decode + resize + column-major RLE + Parquet, one "
          "core each) over the model's time per frame; the pipelined side spreads it over "
          "that many cores. dev-prep: frames prepared on the device, as GPU actors do by "
          "default; the host's share is decode + RLE + Parquet (the device's share is inside "
          "the stand-in's wait here; bench/gpu.py times it on a GPU).")
    if args.quick:
        print("RESULT " + json.dumps(results[0]))
    else:
        print("RESULT " + json.dumps({"cases": results}))


if __name__ == "__main__":
    main()
