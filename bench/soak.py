"""Soak: one job over hundreds of tiny videos; the driver's memory over the job.

A night's run is thousands of videos in one job. What the driver keeps of a
finished video must be on disk, not in its memory: this bench runs one job
over ``--videos`` copies of one short video (each its own manifest row and
video id), samples the driver's RSS at every scheduler step against the
number of videos done, and prints

- the RSS after start-up and at the end,
- the slope after ``--warmup`` videos, in KB per video done (least squares),
- videos per second after warm-up and over the whole job.

The driver is this process (the job runs in-process, as ``sam-batch run``
does); the actors are Ray's processes and not counted.

    python bench/soak.py --videos 150 --frames 30 --chunk 16 --model sam-batch-tiny
    python bench/soak.py --videos 300 --frames 8 --random-weights --json soak.json
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


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of RSS (KB) over videos done."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=300)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=48)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--model", default=None, help="e.g. sam-batch-tiny (the shipped model)")
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cpus-per-worker", type=float, default=1)
    ap.add_argument("--warmup", type=int, default=None,
                    help="videos done before the slope is measured (default: a fifth)")
    ap.add_argument("--out", default=None, help="dataset folder (default: a temporary one)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    if not args.model and not args.random_weights:
        args.random_weights = True
    warmup = args.videos // 5 if args.warmup is None else args.warmup

    from sam_batch.config import JobConfig
    from sam_batch.driver.job import run
    from sam_batch.driver.progress import Progress
    from sam_batch.synthetic import first_frame_prompts, generate, write_mp4

    class Sampler(Progress):
        """Records (videos done, RSS) at every scheduler step; prints nothing."""

        def __init__(self) -> None:
            super().__init__("off")
            self.samples: list[tuple[float, int, int]] = []
            self.done = 0

        def __call__(self, scheduler) -> None:
            self.done = sum(v.status in ("done", "failed") for v in scheduler.videos)
            self.samples.append((time.monotonic(), self.done, rss_kb()))

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        folder = Path(tmp)
        clip = generate(0, width=args.width, height=args.height, num_frames=args.frames,
                        num_objects=1, enter_leave=False)
        video = folder / "in.mp4"
        write_mp4(clip, video)  # the driver imports no torch: nor does this bench
        prompts = [{**p, "frame": 0} for p in first_frame_prompts(clip, "box")]
        manifest = folder / "m.jsonl"
        manifest.write_text("".join(
            json.dumps({"video": str(video), "video_id": f"v{i:05d}", "prompts": prompts}) + "\n"
            for i in range(args.videos)))
        out = args.out or str(folder / "ds")
        config = JobConfig(
            manifest=str(manifest), output=out, chunk_frames=args.chunk, workers=args.workers,
            cpus_per_worker=args.cpus_per_worker, random_weights=args.random_weights,
            image_size=args.image_size or (None if args.model else 128), progress="off",
            overwrite=True, **({"model": args.model} if args.model else {}))
        sampler = Sampler()
        start_kb = rss_kb()
        t0 = time.monotonic()
        summary = run(config, progress=sampler)
        wall = time.monotonic() - t0

    samples = sampler.samples
    after = [(d, kb) for _, d, kb in samples if d >= warmup]
    first_done = next((t for t, d, _ in samples if d >= warmup), t0)
    last_t = samples[-1][0] if samples else t0
    steady_vps = (summary.videos_ok - warmup) / max(last_t - first_done, 1e-9)
    started_kb = next((kb for _, d, kb in samples if d >= 1), start_kb)
    result = {
        "videos": args.videos, "frames": args.frames, "size": f"{args.width}x{args.height}",
        "chunk": args.chunk, "model": args.model or "random", "workers": args.workers,
        "ok": summary.videos_ok, "failed": summary.videos_failed,
        "rss_before_mb": start_kb / 1024, "rss_first_video_mb": started_kb / 1024,
        "rss_end_mb": samples[-1][2] / 1024 if samples else None,
        "slope_kb_per_video": slope(after), "warmup_videos": warmup,
        "videos_per_s_after_warmup": steady_vps, "videos_per_s": summary.videos_ok / wall,
        "wall_s": wall,
    }
    print(f"{args.videos} videos x {args.frames} frames ({result['size']}, chunk {args.chunk}, "
          f"{result['model']}): {summary.videos_ok} ok, {summary.videos_failed} failed in "
          f"{wall:.0f} s")
    print(f"driver RSS: {result['rss_first_video_mb']:.0f} MB after start-up (first video "
          f"done), {result['rss_end_mb']:.0f} MB at the end; slope after {warmup} videos: "
          f"{result['slope_kb_per_video']:+.2f} KB per video")
    print(f"videos/s: {steady_vps:.2f} after warm-up, {result['videos_per_s']:.2f} overall")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
