"""Wall time of our path vs the bare official predictor on the same frames and model.

Ratios, each measured side by side in this one process run (best of
``--repeats``, alternating which side goes first):

1. tracker: our chunked tracker (streaming decode from the mp4, a fresh tracker
   per chunk fed only the deserialized state) vs the official
   ``SAM2VideoPredictor`` (frames from a folder, one pass). Target <= 1.05.
2. job: the whole ``sam-batch run`` with one worker (embedded Ray, probe,
   actor start, model load, Parquet parts, tracks, _job.json; chunks of the
   job's default ``chunk_frames`` unless ``--job-chunk``) vs the official
   predictor, two ways. In-process: ``sam_batch.driver.job.run`` against the official
   predictor with its model already built (the strict baseline). As commands:
   ``sam-batch run ...`` against ``python`` running the official predictor once
   (start, imports, model build, load frames, track): what a user waits for
   either way. Target <= 1.10 on CPU. A job pays a fixed start-up (Ray, a
   worker process, the model) that the in-process official run does not, so
   everything is also timed on ``--short-frames``; the two lengths split each
   ratio into that fixed cost, in frames of official tracking, and the
   per-frame (steady-state) ratio, and give the length from which the whole
   job is within 1.10.
3. batch (``--batch-videos N``): one job over N videos of ``--batch-frames``
   frames (one worker) vs the official predictor over each video in turn with
   its model built once, the same two ways. This is how the framework is used:
   a job pays its start-up once for all its videos, and each video costs a
   probe, a first chunk and its tracks.

With ``--cluster`` the jobs join a Ray this run starts once, as jobs on a
running cluster (``--address``, ``ray job submit``) do: the difference from
the embedded runs is what starting and stopping Ray costs a job.

Each ratio is printed as best-of (the least disturbed run of each side) and
as the median of the runs paired in turn, with every pair's ratio: on a shared
2-core machine one pair can swing by 0.1.

    python bench/overhead.py --frames 60 --job-frames 240 --short-frames 16
    python bench/overhead.py --skip-tracker --job-ways commands --repeats 3
    python bench/overhead.py --skip-tracker --skip-job --job-ways commands --batch-videos 4
    python bench/overhead.py --skip-tracker --job-ways commands --cluster
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TQDM_DISABLE", "1")

import _common as common

if TYPE_CHECKING:
    import torch


def ours_job(manifest: Path, image_size: int, chunk: int | None, work: Path,
             address: str | None = None) -> int:
    from sam_batch.config import JobConfig
    from sam_batch.driver.job import run

    chunking = {} if chunk is None else {"chunk_frames": chunk}
    summary = run(JobConfig(manifest=str(manifest), output=str(work / "ds"), random_weights=True,
                            image_size=image_size, workers=1, progress="off", overwrite=True,
                            address=address, **chunking))
    assert summary.ok, summary.text()
    return summary.frames


def job_command(manifest: Path, image_size: int, chunk: int | None, work: Path,
                address: str | None = None) -> int:
    """``sam-batch run`` as a user types it: a process of its own."""
    cmd = ["sam-batch", "run", "--manifest", str(manifest), "--output", str(work / "ds-cmd"),
           "--random-weights", "--image-size", str(image_size), "--workers", "1",
           "--progress", "off", "--overwrite"]
    cmd += [] if chunk is None else ["--chunk-frames", str(chunk)]
    cmd += [] if address is None else ["--address", address]
    subprocess.run(cmd, check=True, capture_output=True)
    return int(json.loads((work / "ds-cmd" / "_job.json").read_text())["counts"]["frames_tracked"])


#: A user's script that runs the official predictor (the same calls as
#: ``common.run_official``, with nothing of sam_batch imported): the model built
#: once, then each video in turn.
OFFICIAL_SCRIPT = """
import json, sys
import torch
from sam2.build_sam import build_sam2_video_predictor
config, runs, size = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
predictor = build_sam2_video_predictor(config, device="cpu",
                                       hydra_overrides_extra=[f"++model.image_size={size}"])
n = 0
with torch.inference_mode():
    for folder, prompts in runs:
        state = predictor.init_state(folder)
        for p in prompts:
            predictor.add_new_points_or_box(state, p["frame"], p["obj_id"], box=p["box"])
        for _, _, logits in predictor.propagate_in_video(state):
            (logits > 0).cpu().numpy()
            n += 1
print(n)
"""


def official_command(image_size: int, runs: list[tuple[Path, list]]) -> int:
    """A ``python`` process that runs the official predictor: imports, build, then each
    (frames folder, prompts) in turn. Returns frames tracked over all of them."""
    done = subprocess.run([sys.executable, "-c", OFFICIAL_SCRIPT, common.CONFIG,
                           json.dumps([[str(f), p] for f, p in runs]), str(image_size)],
                          check=True, capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1])


def best(times: list[float]) -> float:
    return min(times)


def paired(ours: list[float], base: list[float]) -> tuple[float, list[float]]:
    """Median of the per-run ratios, and the ratios: run r of each side ran next to each other."""
    ratios = [a / b for a, b in zip(ours, base, strict=True)]
    return statistics.median(ratios), ratios


def pairs_text(median: float, ratios: list[float]) -> str:
    return f"median of pairs {median:.3f} ({', '.join(f'{x:.3f}' for x in ratios)})"


def compare_tracker(args: argparse.Namespace, official: torch.nn.Module, work: Path) -> None:
    """Our chunked tracker vs the official predictor, both with their model built."""
    from sam_batch.track.model import ModelSpec, load_model

    video, prompts = common.make_video(work, args.frames)
    model = load_model(ModelSpec(random_weights=True, image_size=args.image_size, device="cpu"))
    folder = common.frames_folder(video, work / "frames", args.frames)
    times = time_sides({
        "official": lambda: common.run_official(official, folder, prompts),
        "ours": lambda: common.run_chunked(model, video, args.frames, prompts, args.chunk),
    }, args.repeats, args.frames)
    t_off, t_ours = times["official"], times["ours"]
    print(f"tracker: official {best(t_off):.2f} s, ours chunked {best(t_ours):.2f} s over "
          f"{args.frames} frames -> ratio {best(t_ours) / best(t_off):.3f} (target <= 1.05); "
          f"{pairs_text(*paired(t_ours, t_off))}", flush=True)


#: (our side, its baseline, what the pair compares) of the whole-job comparisons.
COMPARISONS = (
    ("job", "official", "in-process: sam_batch.driver.job.run vs the official predictor built"),
    ("job command", "official command",
     "commands: sam-batch run vs python running the official predictor"),
)


def job_inputs(folder: Path, videos: int, frames: int) -> tuple[list[tuple[Path, list]], Path]:
    """``videos`` clips of ``frames`` frames (a seed each): their frames folders with
    prompts for the official side, and one manifest listing them all for ours."""
    runs, rows = [], []
    for i in range(videos):
        clip, prompts = common.make_video(folder / f"video-{i}", frames, seed=i)
        runs.append((common.frames_folder(clip, folder / f"frames-{i}", frames), prompts))
        rows.append(json.dumps({"video": str(clip), "video_id": f"v{i}", "prompts": prompts}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    return runs, manifest


def time_sides(sides: dict[str, Callable[[], int]], repeats: int, frames: int
               ) -> dict[str, list[float]]:
    """Wall time of each side, ``repeats`` times, each side going first in turn; every
    run must track all ``frames``."""
    names = list(sides)
    times: dict[str, list[float]] = {side: [] for side in names}
    for r in range(repeats):
        k = r % len(names)
        for side in names[k:] + names[:k]:
            t, got = common.timed(sides[side])
            times[side].append(t)
            assert got == frames, (side, got, frames)
    return times


def job_sides(args: argparse.Namespace, ways: tuple[str, ...], official: torch.nn.Module,
              runs: list[tuple[Path, list]], manifest: Path, work: Path,
              address: str | None) -> dict[str, Callable[[], int]]:
    """The whole-job sides asked for, over the same videos: each returns frames tracked."""
    sides = {
        "official": lambda: sum(common.run_official(official, f, p) for f, p in runs),
        "job": lambda: ours_job(manifest, args.image_size, args.job_chunk, work, address),
        "official command": lambda: official_command(args.image_size, runs),
        "job command": lambda: job_command(manifest, args.image_size, args.job_chunk, work,
                                           address),
    }
    return {way: sides[way] for way in ways}


def compare_batch(args: argparse.Namespace, sides: tuple[str, ...], official: torch.nn.Module,
                  work: Path, address: str | None) -> dict:
    """One job over many videos vs the official predictor over each in turn, its model
    built once: how the framework is used, and a job pays its start-up once."""
    n, frames = args.batch_videos, args.batch_frames
    runs, manifest = job_inputs(work / "batch", n, frames)
    times = time_sides(job_sides(args, sides, official, runs, manifest, work, address),
                       args.repeats, n * frames)
    result = {}
    for ours, base, label in COMPARISONS:
        if ours not in sides:
            continue
        ratio = best(times[ours]) / best(times[base])
        median, ratios = paired(times[ours], times[base])
        print(f"batch of {n} videos x {frames} frames, {label}: {best(times[ours]):.2f} s vs "
              f"{best(times[base]):.2f} s -> ratio {ratio:.3f} (target <= 1.10); "
              f"{pairs_text(median, ratios)}", flush=True)
        result[f"batch {ours}"] = {"videos": n, "frames": frames, "ratio": ratio,
                                   "median_of_pairs": median, "pairs": ratios}
    return result


def start_cluster() -> str:
    """A Ray head on loopback, alive until this process exits, that jobs join by address:
    what a job on a running cluster pays (connect, an actor, its model) without the
    embedded Ray's start and stop. Both sides run while its idle processes are up."""
    import ray

    from sam_batch.runtime.session import init_local

    init_local(num_gpus=0)
    address = ray.get_runtime_context().gcs_address
    print(f"jobs join the Ray at {address}", flush=True)
    return address


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--job-frames", type=int, default=240)
    ap.add_argument("--short-frames", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=16, help="chunk of the tracker comparison")
    ap.add_argument("--job-chunk", type=int, help="chunk_frames of the job (its default if unset)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-job", action="store_true")
    ap.add_argument("--skip-tracker", action="store_true")
    ap.add_argument("--batch-videos", type=int, default=0,
                    help="also compare one job over this many videos (0: skip)")
    ap.add_argument("--batch-frames", type=int, default=120, help="frames of each batch video")
    ap.add_argument("--cluster", action="store_true",
                    help="jobs join a Ray this run starts once (as on a running cluster), "
                         "instead of each starting and stopping an embedded one")
    ap.add_argument("--job-ways", choices=("both", "in-process", "commands"), default="both",
                    help="which whole-job comparisons to run")
    args = ap.parse_args()
    common.silence()
    import torch

    work = Path(tempfile.mkdtemp(prefix="sam_batch_bench_overhead_"))
    official = common.official_predictor(args.image_size)
    print(f"torch threads {torch.get_num_threads()}, image size {args.image_size}, "
          f"chunk {args.chunk}", flush=True)
    if not args.skip_tracker:
        compare_tracker(args, official, work)

    ways = {"both": ("official", "job", "official command", "job command"),
            "in-process": ("official", "job"),
            "commands": ("official command", "job command")}
    sides = ways[args.job_ways]
    address = start_cluster() if args.cluster else None
    result = {}
    if args.batch_videos:
        result.update(compare_batch(args, sides, official, work, address))
    if args.skip_job:
        common.emit(result)
        return

    lengths = (args.short_frames, args.job_frames)
    times: dict[str, dict[int, list[float]]] = {side: {} for side in sides}
    for n in lengths:
        runs, manifest = job_inputs(work / f"job-{n}", 1, n)
        timed = time_sides(job_sides(args, sides, official, runs, manifest, work, address),
                           args.repeats, n)
        for side, ts in timed.items():
            times[side][n] = ts
    short, long = lengths
    for ours, base, label in COMPARISONS:
        if ours not in sides:
            continue
        job_s, job_n = (best(times[ours][n]) for n in lengths)
        off_s, off_n = (best(times[base][n]) for n in lengths)
        ratio = job_n / off_n
        per_frame = (off_n - off_s) / (long - short)
        steady = (job_n - job_s) / (off_n - off_s)
        fixed_frames = (job_s - off_s) / per_frame
        break_even = (fixed_frames / (1.10 - steady)) if steady < 1.10 else float("inf")
        print(f"{label}: {job_n:.2f} s vs {off_n:.2f} s over "
              f"{long} frames -> ratio {ratio:.3f} (target <= 1.10); fixed start-up "
              f"{fixed_frames:.0f} frames of tracking, steady-state {steady:.3f}, within 1.10 "
              f"from {break_even:.0f} frames on", flush=True)
        median, ratios = paired(times[ours][long], times[base][long])
        print(f"  {long} frames, {pairs_text(median, ratios)}", flush=True)
        result[ours] = {"ratio": ratio, "steady": steady, "fixed_frames": fixed_frames,
                        "break_even_frames": break_even, "median_of_pairs": median,
                        "pairs": ratios}
    common.emit(result)


if __name__ == "__main__":
    main()
