"""Per-GPU frames/s: the official SAM2VideoPredictor and ``sam-batch run``, side by side.

For each model (hiera-T, B+), video size (720p, 1080p), object count (1, 5) and
compile setting (off, on), one process run measures:

- ``official``: sam2's ``build_sam2_video_predictor`` (``vos_optimized`` when
  compiled), ``init_state`` on the video's frames as JPEGs (its loader), box prompts on
  frame 0, ``propagate_in_video``; frames/s of the whole call and of propagation alone;
- ``sam-batch``: one ``sam-batch run`` job (embedded Ray, one worker holding the GPU)
  over the same video; frames/s of the whole job and of the video alone (its
  ``wall_s`` in ``videos/``: Ray's start, the actor's model load and the dataset's
  finish left out).

Before them, ``preparation``: per frame size, sam2's preprocessing of one frame to
the model's input on the host (PIL resize and table, one core) against on the
device (``track/resample.py``, what GPU actors run by default), in ms per frame,
and whether the two give the same float32 bits.

Random weights (nothing to download; speed does not depend on the weights) at 1024
px, bfloat16 autocast on CUDA as sam2's demos run. The first compiled case pays the
compile (minutes), reported apart as ``warm-up``. The whole default run is meant to
take under 8 minutes on one A100/H100; ``--quick`` runs one small case on a CPU to
check the script itself.

    python bench/gpu.py                         # on a CUDA machine
    python bench/gpu.py --quick                 # a CPU smoke run of the script
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sam_batch.config import JobConfig
from sam_batch.driver.job import run
from sam_batch.media.decode import read_frames
from sam_batch.synthetic import first_frame_prompts, generate, write_mp4

MODELS = {"t": ("sam2.1_hiera_t", "configs/sam2.1/sam2.1_hiera_t.yaml"),
          "b+": ("sam2.1_hiera_b+", "configs/sam2.1/sam2.1_hiera_b+.yaml")}
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "small": (320, 240)}


def make_case(folder: Path, size: str, objects: int, frames: int) -> tuple[Path, Path, list]:
    """An mp4, its frames as JPEG files for the official loader, and box prompts."""
    width, height = SIZES[size]
    folder.mkdir(parents=True, exist_ok=True)
    clip = generate(7, width=width, height=height, num_frames=frames, num_objects=objects,
                    enter_leave=False)
    video = folder / "video.mp4"
    write_mp4(clip, video)
    jpegs = folder / "jpg"
    jpegs.mkdir(exist_ok=True)
    for i, rgb in read_frames(str(video), 0, frames):
        Image.fromarray(rgb).save(jpegs / f"{i:05d}.jpg", quality=95)
    prompts = [{**p, "frame": 0} for p in first_frame_prompts(clip, "box")]
    return video, jpegs, prompts


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def official(config: str, jpegs: Path, prompts: list, device: str, compile: bool,
             image_size: int) -> dict:
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(0)
    predictor = build_sam2_video_predictor(
        config, device=device, vos_optimized=compile,
        hydra_overrides_extra=[f"++model.image_size={image_size}"])
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda"
                else torch.autocast("cpu", enabled=False))
    with torch.inference_mode(), autocast:
        sync(device)
        t0 = time.perf_counter()
        state = predictor.init_state(str(jpegs))
        for p in prompts:
            predictor.add_new_points_or_box(state, 0, p["obj_id"], box=p["box"])
        sync(device)
        t1 = time.perf_counter()
        n = 0
        for _, _, masks in predictor.propagate_in_video(state):
            (masks > 0).cpu()
            n += 1
        sync(device)
        t2 = time.perf_counter()
    return {"frames": n, "fps": n / (t2 - t0), "tracking_fps": n / (t2 - t1)}


def ours(model: str, video: Path, prompts: list, out: Path, device: str, compile: bool,
         image_size: int) -> dict:
    manifest = out.parent / f"{out.name}.jsonl"
    manifest.write_text(json.dumps({"video": str(video), "video_id": "clip",
                                    "prompts": prompts}) + "\n")
    config = JobConfig(manifest=str(manifest), output=str(out), model=model,
                       random_weights=True, image_size=image_size, device=device,
                       compile=compile, workers=1, progress="off", overwrite=True)
    t0 = time.perf_counter()
    summary = run(config)
    seconds = time.perf_counter() - t0
    import pyarrow.parquet as pq

    videos = pq.read_table(out / "videos").to_pylist()
    tracking = sum(float(v["wall_s"] or 0) for v in videos)  # the video's own time
    return {"frames": summary.frames, "fps": summary.frames / seconds,
            "tracking_fps": summary.frames / tracking if tracking else None}


PREPARE_SIZES = {**SIZES, "4K": (3840, 2160)}


def preparation(sizes: list[str], image_size: int, device: str, repeats: int = 10) -> list:
    """ms per frame of sam2's preprocessing on the host and on ``device``, and equality."""
    from sam_batch.track.frames import prepare_frame
    from sam_batch.track.preprocess import FramePreparer

    print(f"{'video':>6} | host ms/frame (one core) | device ms/frame | same bits")
    rows = []
    for size in sizes:
        width, height = PREPARE_SIZES[size]
        rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        preparer = FramePreparer(image_size, torch.device(device), "device")
        same = torch.equal(preparer(rgb).cpu(), prepare_frame(rgb, image_size))  # warms up
        t0 = time.process_time()
        for _ in range(repeats):
            prepare_frame(rgb, image_size)
        host_ms = (time.process_time() - t0) / repeats * 1000
        sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            preparer.device(preparer.host(rgb))
        sync(device)
        device_ms = (time.perf_counter() - t0) / repeats * 1000
        rows.append({"video": size, "host_ms": host_ms, "device_ms": device_ms, "same": same})
        print(f"{size:>6} | {host_ms:24.1f} | {device_ms:15.2f} | {same}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["t", "b+"], choices=list(MODELS))
    ap.add_argument("--sizes", nargs="+", default=["720p", "1080p"], choices=list(SIZES))
    ap.add_argument("--objects", nargs="+", type=int, default=[1, 5])
    ap.add_argument("--compile", nargs="+", default=["off", "on"], choices=["off", "on"])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true",
                    help="one small uncompiled case (CPU smoke run of the script)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.quick:
        args.models, args.sizes, args.objects, args.compile = ["t"], ["small"], [1], ["off"]
        args.frames, args.image_size = min(args.frames, 6), 128
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"device: {gpu}; {args.frames} frames a case; image size {args.image_size}; "
          "random weights", flush=True)
    prepared = preparation(args.sizes if args.quick else [*args.sizes, "4K"],
                           args.image_size, args.device, repeats=2 if args.quick else 10)
    print(f"{'model':>6} {'video':>6} {'obj':>3} {'compile':>7} | {'official fps':>12} "
          f"{'(tracking)':>10} | {'sam-batch fps':>13} {'(tracking)':>10} | ratio")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for objects in args.objects:
                video, jpegs, prompts = make_case(Path(tmp) / f"{size}-{objects}", size,
                                                  objects, args.frames)
                for key in args.models:
                    name, config = MODELS[key]
                    for compiled in args.compile:
                        on = compiled == "on"
                        t0 = time.perf_counter()
                        ref = official(config, jpegs, prompts, args.device, on, args.image_size)
                        got = ours(name, video, prompts, Path(tmp) / f"out-{key}-{size}-"
                                   f"{objects}-{compiled}", args.device, on, args.image_size)
                        row = {"model": name, "video": size, "objects": objects,
                               "compiled": on, "official": ref, "sam_batch": got,
                               "ratio": got["fps"] / ref["fps"],
                               "seconds": time.perf_counter() - t0, "device": gpu}
                        rows.append(row)
                        tracking = got["tracking_fps"]
                        print(f"{key:>6} {size:>6} {objects:>3} {compiled:>7} | "
                              f"{ref['fps']:12.1f} {ref['tracking_fps']:10.1f} | "
                              f"{got['fps']:13.1f} "
                              f"{tracking if tracking is None else round(tracking, 1)!s:>10} | "
                              f"{row['ratio']:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"preparation": prepared, "runs": rows}, indent=2))
    print("RESULT " + json.dumps({"device": gpu, "rows": len(rows),
                                  "mean_ratio": float(np.mean([r["ratio"] for r in rows])),
                                  "preparation": prepared}))


if __name__ == "__main__":
    main()
