"""One video's objects over several actors: 1 group vs 2 vs 4 (``--objects-per-worker``).

SAM 2.1 tracks each object on its own; only the image features are shared. Split
into G groups, a video's objects run on G chains at once (on any actors), and
each frame is decoded and encoded G times instead of once. Whether that pays
depends on how the per-frame cost divides: the image encoder (once per frame per
group) against memory attention, decoder and memory encoder (once per frame per
object). This bench runs the same job (one video, ``--objects`` box-prompted
objects, ``--workers`` workers with one torch thread each) unsplit and split into
2 and 4 groups, in this one process run, and prints wall time, frames/s per
object and the speed-up over the unsplit job; every split output is checked equal
to the unsplit one.

    python bench/objects.py                       # 20 objects, 2 workers, 1/2/4 groups
    python bench/objects.py --objects 8 --frames 12
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TQDM_DISABLE", "1")

import _common as common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objects", type=int, default=20)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--groups", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    args = ap.parse_args()
    common.silence()
    import pyarrow.parquet as pq

    from sam_batch.config import JobConfig
    from sam_batch.driver.job import run
    from sam_batch.runtime.session import init_local

    work = Path(tempfile.mkdtemp(prefix="sam_batch_bench_objects_"))
    video, prompts = common.make_video(work / "video", args.frames, width=args.width,
                                       height=args.height, objects=args.objects)
    manifest = work / "manifest.jsonl"
    manifest.write_text(json.dumps({"video": str(video), "video_id": "crowd",
                                    "prompts": prompts}) + "\n")
    print(f"{len(prompts)} objects, {args.frames} frames {args.width}x{args.height}, "
          f"{args.workers} workers (1 torch thread each), image size {args.image_size}")
    init_local(num_cpus=args.workers)  # one Ray for every job: its start is not measured
    results, reference = [], None
    for groups in args.groups:
        per_worker = -(-len(prompts) // groups)
        out = work / f"g{groups}"
        t0 = time.perf_counter()
        summary = run(JobConfig(
            manifest=str(manifest), output=str(out), random_weights=True,
            image_size=args.image_size, chunk_frames=args.chunk, workers=args.workers,
            cpus_per_worker=1, device="cpu", progress="off",
            objects_per_worker=None if groups == 1 else per_worker))
        seconds = time.perf_counter() - t0
        assert summary.ok, summary.text()
        masks = pq.read_table(out / "masks", columns=["frame_idx", "obj_id", "rle"]).sort_by(
            [("frame_idx", "ascending"), ("obj_id", "ascending")]).to_pylist()
        if reference is None:
            reference = masks
        same = masks == reference
        fps_obj = args.frames * len(prompts) / seconds
        results.append({"groups": groups, "seconds": seconds, "object_frames_per_s": fps_obj,
                        "speedup": results[0]["seconds"] / seconds if results else 1.0,
                        "identical": same})
        print(f"groups {groups}: {seconds:6.1f} s, {fps_obj:6.1f} object-frames/s, "
              f"speed-up {results[-1]['speedup']:.2f}x, masks identical to unsplit: {same}",
              flush=True)
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
