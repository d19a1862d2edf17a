"""Parallel segments against the single pass: quality, identity and cost, for S = 1, 2, 4, 8.

Every run goes through ``sam-batch run`` (``sam_batch.driver.job.run``) with the
same workers, one job per S over all the videos. S = 1 is the exact single pass
and the reference. Per S it prints: mean mask IoU against the single pass (over
the (frame, object) pairs where either has a mask), J&F against the synthetic
truth next to the single pass's, boundary ID switches and IDF1 within ±overlap
frames of every segment start, rows missing from the dataset's contract (every
object on every frame from its first), the job's wall time and the frames it
tracked (sparse pass + segments). The videos, one of each kind:

- ``plain``: every object in view throughout, prompted on frame 0;
- ``enter``: objects enter and leave; each is prompted where it first shows;
- ``away``: objects step off-screen across segment starts and come back.

Seeds are the sparse pass's memory (``--sparse-step``, the default) or, with
``--seeds discovery``, what discovery finds on each segment start.

    python bench/segments.py                                   # shipped model, ~10 min on 2 cores
    python bench/segments.py --model random --frames 96        # random weights: structure only
    python bench/segments.py --frames 2000 --workers 4 --gpus-per-worker 1
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TQDM_DISABLE", "1")

import _common as common
import numpy as np

WIDTH, HEIGHT = 256, 192


def masks_by_frame(url: str, video_id: str) -> dict[int, dict[int, str]]:
    from sam_batch.dataset.reader import Dataset

    out: dict[int, dict[int, str]] = {}
    for r in Dataset(url).masks(video_id).to_pylist():
        out.setdefault(r["frame_idx"], {})[r["obj_id"]] = r["rle"]
    return out


def make_videos(folder: Path, frames: int, objects: int, starts: list[int]) -> dict:
    """``{video_id: (clip, prompts)}``, each written to ``folder/<video_id>.mp4``."""
    from sam_batch.synthetic import (
        SceneConfig,
        first_frame_prompts,
        generate,
        make_scene,
        render,
        step_away,
        write_mp4,
    )

    common_start = starts[0]
    hide = {1: [common_start], 2: [s for s in starts[1:] if abs(s - common_start) > 16][:2]}
    clips = {
        "plain": generate(11, width=WIDTH, height=HEIGHT, num_frames=frames,
                          num_objects=objects, enter_leave=False),
        "enter": generate(5, width=WIDTH, height=HEIGHT, num_frames=frames,
                          num_objects=objects, enter_leave=True),
        "away": render(step_away(make_scene(SceneConfig(
            seed=12, width=WIDTH, height=HEIGHT, num_frames=frames, num_objects=objects,
            enter_leave=False)), hide)),
    }
    out = {}
    for vid, clip in clips.items():
        write_mp4(clip, folder / f"{vid}.mp4")
        out[vid] = (clip, first_frame_prompts(clip, "box", min_area=64))
    return out


def iou_vs(pred: dict[int, dict[int, str]], ref: dict[int, dict[int, str]]) -> float:
    """Mean mask IoU over the (frame, object) pairs of ``ref`` where either has a mask."""
    from pycocotools import mask as mask_utils

    from sam_batch.dataset.rle import to_coco

    ious = []
    for frame, objs in ref.items():
        for obj, r in objs.items():
            a = to_coco(r, HEIGHT, WIDTH)
            p = pred.get(frame, {}).get(obj)
            b = to_coco(p, HEIGHT, WIDTH) if p is not None else None
            area_a = float(mask_utils.area(a))
            area_b = float(mask_utils.area(b)) if b is not None else 0.0
            if area_a == 0 and area_b == 0:
                continue
            if area_a == 0 or area_b == 0:
                ious.append(0.0)
                continue
            ious.append(float(mask_utils.iou([b], [a], [0])[0][0]))
    return float(np.mean(ious)) if ious else 1.0


def jf(clip, prompts: list[dict], pred: dict[int, dict[int, str]]) -> float:
    from sam_batch.dataset.rle import decode
    from sam_batch.evaluation.metrics.davis import evaluate_video

    ids = sorted({p["obj_id"] for p in prompts})
    gt = {k: clip.masks[k] for k in ids}
    out = {k: np.zeros_like(gt[k]) for k in ids}
    for frame, objs in pred.items():
        for obj, r in objs.items():
            if obj in out:
                out[obj][frame] = decode(r, HEIGHT, WIDTH)
    return evaluate_video(gt, out).mean.jf


def missing_rows(pred: dict[int, dict[int, str]], frames: int) -> int:
    """(frame, object) rows the dataset lacks after the object's first row."""
    first: dict[int, int] = {}
    for frame in sorted(pred):
        for obj in pred[frame]:
            first.setdefault(obj, frame)
    return sum(1 for obj, f0 in first.items() for f in range(f0, frames)
               if obj not in pred.get(f, {}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--segments", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--gpus-per-worker", type=float, default=0.0)
    ap.add_argument("--image-size", type=int, default=256, help="random weights only")
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--overlap", type=int, default=8)
    ap.add_argument("--sparse-step", type=int, default=8)
    ap.add_argument("--seeds", choices=["sparse", "discovery"], default="sparse")
    ap.add_argument("--model", default="sam-batch-tiny", help="'random': random weights")
    args = ap.parse_args()
    common.silence()
    from sam_batch.config import JobConfig
    from sam_batch.driver.job import run
    from sam_batch.evaluation.metrics.identity import boundary_id_metrics
    from sam_batch.plan.chunks import plan_video, sparse_indices

    def sparse_frames(s: int) -> int:
        """Samples the sparse passes track: every k-th from the first prompt to the last start
        (the job's frame count leaves them out: it counts the frames of the output)."""
        if s == 1 or args.seeds != "sparse" or not args.sparse_step:
            return 0
        total = 0
        for _, prompts in videos.values():
            frames = [p["frame"] for p in prompts]
            indices = sparse_indices(args.frames, args.sparse_step, frames, starts_of(s))
            total += max(1, bisect.bisect_left(indices, max(starts_of(s))))
        return total

    def starts_of(s: int) -> list[int]:
        return [seg.start for seg in plan_video("v", args.frames, args.chunk, s,
                                                args.overlap).segments[1:]]

    work = Path(tempfile.mkdtemp(prefix="sam_batch_bench_segments_"))
    starts = starts_of(min(s for s in args.segments if s > 1) if max(args.segments) > 1 else 2)
    starts += [f for s in sorted(args.segments) for f in starts_of(s) if f not in starts]
    videos = make_videos(work, args.frames, args.objects, starts)
    manifest = work / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"video": str(work / f"{vid}.mp4"), "video_id": vid,
                                            "prompts": prompts}) + "\n"
                                for vid, (_, prompts) in videos.items()))
    model = ({"random_weights": True, "image_size": args.image_size} if args.model == "random"
             else {"model": args.model})
    times, tracked, outputs = {}, {}, {}
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
        tracked[s] = summary.frames + sparse_frames(s)
        outputs[s] = {vid: masks_by_frame(out, vid) for vid in videos}
    ref = args.segments[0]
    print(f"{len(videos)} videos ({', '.join(videos)}) x {args.frames} frames, {args.objects} "
          f"objects, {args.workers} workers, chunks {args.chunk}, overlap {args.overlap}, "
          f"sparse step {args.sparse_step}, seeds: {args.seeds}; reference: S={ref}")
    head = "  ".join(f"{'IoU ' + v:>11} {'J&F ' + v:>10}" for v in videos)
    print(f"{'S':>3} {'IoU':>6} {'J&F':>6} {head} {'IDF1':>6} {'IDsw':>5} {'missing':>8} "
          f"{'wall s':>7} {'frames':>7}")
    results = {}
    for s in args.segments:
        per = {}
        idf1s, switches = [], 0
        for vid, (clip, prompts) in videos.items():
            pred, reference = outputs[s][vid], outputs[ref][vid]
            per[vid] = {"iou": iou_vs(pred, reference), "jf": jf(clip, prompts, pred),
                        "missing": missing_rows(pred, args.frames)}
            if starts_of(s):
                m = boundary_id_metrics(pred, reference, HEIGHT, WIDTH, starts_of(s),
                                        args.overlap).overall
                idf1s.append(m.idf1)
                switches += m.id_switches
        row = {"iou": float(np.mean([p["iou"] for p in per.values()])),
               "jf": float(np.mean([p["jf"] for p in per.values()])),
               "boundary_idf1": float(np.mean(idf1s)) if idf1s else 1.0,
               "id_switches": switches, "missing": sum(p["missing"] for p in per.values()),
               "wall_s": times[s], "frames_tracked": tracked[s], "videos": per}
        results[s] = row
        cells = "  ".join(f"{p['iou']:>11.3f} {p['jf']:>10.3f}" for p in per.values())
        print(f"{s:>3} {row['iou']:>6.3f} {row['jf']:>6.3f} {cells} {row['boundary_idf1']:>6.3f} "
              f"{switches:>5} {row['missing']:>8} {times[s]:>7.1f} {tracked[s]:>7}")
    common.emit({"segments": results, "seeds": args.seeds})


if __name__ == "__main__":
    main()
