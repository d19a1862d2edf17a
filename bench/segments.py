"""One long video as S = 1, 2, 4 parallel segments: wall-time speed-up and boundary IDF1.

Every run goes through ``sam-batch run`` (``sam_batch.driver.job.run``) with the same
workers, in this one process run. S = 1 is the exact single pass and the
reference: the boundary metric scores ID switches and IDF1 of each stitched
output within ±overlap frames of every segment start against it. Seeds are the
sparse pass's masks (``--sparse-step``, the default) or, with
``--seeds discovery``, what discovery finds on each segment start.

    python bench/segments.py --frames 96 --workers 2          # CPU, random weights
    python bench/segments.py --model sam-batch-tiny           # the shipped model
    python bench/segments.py --frames 2000 --workers 4 --gpus-per-worker 1 --image-size 1024
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


def masks_by_frame(url: str, video_id: str) -> dict[int, dict[int, str]]:
    from sam_batch.dataset.reader import Dataset

    out: dict[int, dict[int, str]] = {}
    for r in Dataset(url).masks(video_id).to_pylist():
        out.setdefault(r["frame_idx"], {})[r["obj_id"]] = r["rle"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--segments", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--gpus-per-worker", type=float, default=0.0)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--overlap", type=int, default=8)
    ap.add_argument("--sparse-step", type=int, default=8)
    ap.add_argument("--seeds", choices=["sparse", "discovery"], default="sparse")
    ap.add_argument("--model", default=None, help="e.g. sam-batch-tiny (default: random weights)")
    args = ap.parse_args()
    common.silence()
    from sam_batch.config import JobConfig
    from sam_batch.driver.job import run
    from sam_batch.evaluation.metrics.identity import boundary_id_metrics
    from sam_batch.plan.chunks import plan_video

    work = Path(tempfile.mkdtemp(prefix="sam_batch_bench_segments_"))
    video, prompts = common.make_video(work, args.frames, width=256, height=192,
                                       objects=args.objects, seed=11)
    manifest = work / "manifest.jsonl"
    manifest.write_text(json.dumps({"video": str(video), "video_id": "long",
                                    "prompts": prompts}) + "\n")
    model = ({"model": args.model} if args.model else
             {"random_weights": True, "image_size": args.image_size})
    times, outputs = {}, {}
    for s in args.segments:
        extra = ({"sparse_step": 0, "discover": "starts"} if args.seeds == "discovery" and s > 1
                 else {"sparse_step": args.sparse_step})
        out = str(work / f"s{s}")
        t0 = time.perf_counter()
        summary = run(JobConfig(
            manifest=str(manifest), output=out, chunk_frames=args.chunk, overlap=args.overlap,
            segments=s, workers=args.workers, cpus_per_worker=1,
            gpus_per_worker=args.gpus_per_worker, progress="off", **model, **extra))
        times[s] = time.perf_counter() - t0
        assert summary.ok, summary.text()
        outputs[s] = masks_by_frame(out, "long")
    reference = outputs[args.segments[0]]
    print(f"{args.frames} frames, {args.objects} objects, {args.workers} workers, "
          f"seeds: {args.seeds}; reference: S={args.segments[0]}")
    print(f"{'S':>3} {'wall s':>8} {'speed-up':>9} {'boundary IDF1':>14} {'ID switches':>12}")
    results = {}
    for s in args.segments:
        plan = plan_video("long", args.frames, args.chunk, s, args.overlap)
        starts = [seg.start for seg in plan.segments[1:]]
        idf1, switches = 1.0, 0
        if starts:
            m = boundary_id_metrics(outputs[s], reference, 192, 256, starts, args.overlap).overall
            idf1, switches = m.idf1, m.id_switches
        speedup = times[args.segments[0]] / times[s]
        results[s] = {"speedup": speedup, "boundary_idf1": idf1, "id_switches": switches}
        print(f"{s:>3} {times[s]:>8.1f} {speedup:>8.2f}x {idf1:>14.3f} {switches:>12}")
    common.emit({"segments": results, "seeds": args.seeds})


if __name__ == "__main__":
    main()
