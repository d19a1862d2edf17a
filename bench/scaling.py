"""Throughput of ``sam-batch run`` with 1 worker vs 2 workers over 4 videos.

Each worker gets one CPU (one torch thread) so the comparison is about the
runtime spreading videos over workers, not about threads; run on a machine
with at least two free cores (or GPUs: pass --gpus-per-worker 1). All runs
happen in this one process run; two speed-ups are printed:

- whole job: wall time of the job with 1 worker over the job with 2, start-up
  (Ray, actors, models) and finish included, which no number of workers
  shortens;
- tracking: the same jobs on ``--short-frames`` per video too, and the
  speed-up of the difference (``(T1(long) - T1(short)) / (T2(long) -
  T2(short))``): the extra frames' throughput, with the fixed costs cancelled.

    python bench/scaling.py --frames 48 --short-frames 16
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
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--short-frames", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--gpus-per-worker", type=float, default=0.0)
    args = ap.parse_args()
    common.silence()
    from sam_batch.config import JobConfig
    from sam_batch.driver.job import run

    work = Path(tempfile.mkdtemp(prefix="sam_batch_bench_scaling_"))
    times: dict[tuple[int, int], float] = {}
    for frames in (args.short_frames, args.frames):
        rows = []
        for i in range(args.videos):
            video, prompts = common.make_video(work / f"v{i}-{frames}", frames, seed=i)
            rows.append({"video": str(video), "video_id": f"v{i}", "prompts": prompts})
        manifest = work / f"manifest-{frames}.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for workers in (1, 2):
            t0 = time.perf_counter()
            summary = run(JobConfig(
                manifest=str(manifest), output=str(work / f"ds{workers}-{frames}"),
                random_weights=True, image_size=args.image_size, chunk_frames=args.chunk,
                workers=workers, cpus_per_worker=1, gpus_per_worker=args.gpus_per_worker,
                progress="off"))
            t = times[workers, frames] = time.perf_counter() - t0
            assert summary.ok, summary.text()
            print(f"{workers} worker(s), {args.videos} x {frames} frames: {t:.1f} s "
                  f"({summary.frames / t:.2f} frames/s)", flush=True)
    whole = times[1, args.frames] / times[2, args.frames]
    tracking = ((times[1, args.frames] - times[1, args.short_frames])
                / (times[2, args.frames] - times[2, args.short_frames]))
    print(f"speed-up 2 vs 1 workers: whole job {whole:.2f}x, tracking {tracking:.2f}x "
          "(>= 1.8x where the cores are free)")
    common.emit({"whole_job": whole, "tracking": tracking})


if __name__ == "__main__":
    main()
