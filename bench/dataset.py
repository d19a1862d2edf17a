"""What a dataset weighs and costs to read: chunk parts vs compacted, per retention setting.

One process run, baseline and ours side by side:

1. A long synthetic video at a small size (masks from its exact ground truth,
   through the real writer, one part per ``--chunk-frames``; after each chunk a
   state file as large as a real state of the same model, size and objects,
   measured by tracking a few frames). Baseline: what a job kept before (every
   part, every state). Ours: the same dataset compacted
   (``dataset.compact``) and pruned by each ``--keep-states`` setting. Files
   and bytes per video-hour of masks, states and tracks.
2. Extrapolation to 1080p video and a 1024 px model, per object-hour: mask
   bytes per object-frame measured at three frame sizes and fitted as a power
   of the size; state bytes per object measured at two model sizes and fitted
   as ``a + b * size**2`` (spatial memories grow with the area, pointers do not).
3. DuckDB reading one object's track from a many-video dataset: every chunk
   part vs compacted, best of ``--repeat``.

    python bench/dataset.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TQDM_DISABLE", "1")

from sam_batch.dataset.compact import compact_video
from sam_batch.dataset.footprint import footprint
from sam_batch.dataset.layout import state_path
from sam_batch.dataset.reader import Dataset
from sam_batch.dataset.retention import KeepStates, prune_states
from sam_batch.dataset.writer import ChunkMasks, write_mask_part
from sam_batch.finish.finalize import finalize_video
from sam_batch.media.storage import Location
from sam_batch.synthetic import generate

FPS = 30.0
HOUR = 3600 * FPS
MIB = 2**20


def write_video(root: Path, video_id: str, masks: dict[int, np.ndarray], chunk: int,
                state_bytes: int | None) -> None:
    """Parts (and states) as a job writes them, then its tracks and videos rows."""
    from sam_batch.dataset.writer import write_video_row

    loc = Location(str(root))
    frames = len(next(iter(masks.values())))
    ids = sorted(masks)
    for c, start in enumerate(range(0, frames, chunk)):
        rows = ChunkMasks(video_id, chunk_idx=c)
        for t in range(start, min(frames, start + chunk)):
            rows.add(t, t / FPS, ids, np.stack([masks[k][t] for k in ids]),
                     np.full(len(ids), 0.9, np.float32))
        if state_bytes:
            loc.write(state_path(video_id, 0, c), os.urandom(state_bytes))
        write_mask_part(loc, rows, segment=0)
    finalize_video(str(root), {}, video_id)
    h, w = next(iter(masks.values())).shape[1:]
    write_video_row(loc, {"video_id": video_id, "video": "", "status": "ok", "frames": frames,
                          "fps": FPS, "width": w, "height": h, "objects": len(ids),
                          "chunks": math.ceil(frames / chunk)})


def state_bytes_per_object(image_size: int, frames: int = 10) -> float:
    """A real state's bytes per object after ``frames`` frames (2 objects minus 1)."""
    from sam_batch.plan.prompts import Prompt
    from sam_batch.synthetic import first_frame_prompts, write_mp4
    from sam_batch.track.frames import VideoFrames
    from sam_batch.track.model import ModelSpec, load_model
    from sam_batch.track.tracker import ChunkTracker

    model = load_model(ModelSpec(random_weights=True, image_size=image_size, device="cpu"))
    clip = generate(3, width=96, height=64, num_frames=frames, num_objects=2, enter_leave=False)
    sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        write_mp4(clip, Path(tmp) / "v.mp4")
        source = VideoFrames.open(str(Path(tmp) / "v.mp4"))
        prompts = [Prompt.from_dict({**p, "frame": 0}) for p in first_frame_prompts(clip, "box")]
        for n in (1, 2):
            tracker = ChunkTracker(model)
            run = tracker.track(tracker.start(source, prompts[:n]), source, frames)
            for _ in run:
                pass
            sizes.append(len(run.state.to_bytes()))
    return float(sizes[1] - sizes[0])


def mask_bytes_per_object_frame(width: int, height: int, frames: int, objects: int,
                                chunk: int) -> float:
    """Compacted mask bytes per object-frame of a synthetic clip at this size."""
    clip = generate(7, width=width, height=height, num_frames=frames, num_objects=objects,
                    enter_leave=False)
    with tempfile.TemporaryDirectory() as tmp:
        write_video(Path(tmp), "v", clip.masks, chunk, None)
        compact_video(Location(tmp), "v")
        size = sum(p.stat().st_size for p in (Path(tmp) / "masks").rglob("*.parquet"))
    return size / (frames * objects)


def retention_settings(frames: int, chunk: int) -> list[str]:
    return ["all", f"every:{max(chunk, frames // 4)}", "last"]


def per_hour(root: Path) -> dict:
    ds = Dataset(str(root))
    fp = footprint(ds.location, ds.videos().to_pylist())
    return {k: {"files": fp[k]["files_per_hour"], "MiB": fp[k]["bytes_per_hour"] / MIB}
            for k in ("masks", "states", "tracks")}


def duckdb_seconds(root: Path, video_id: str, obj_id: int, repeat: int) -> tuple[float, int]:
    import duckdb

    query = (f"SELECT frame_idx, rle FROM read_parquet('{root}/masks/*/*.parquet') "
             f"WHERE video_id = '{video_id}' AND obj_id = {obj_id}")
    best, rows = math.inf, 0
    for _ in range(repeat):
        con = duckdb.connect()  # no cache carried between runs
        t0 = time.perf_counter()
        rows = len(con.execute(query).fetchall())
        best = min(best, time.perf_counter() - t0)
        con.close()
    return best, rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=108000, help="the long video's frames")
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--objects", type=int, default=3)
    p.add_argument("--chunk-frames", type=int, default=64)
    p.add_argument("--image-size", type=int, default=128, help="model size of the state files")
    p.add_argument("--videos", type=int, default=40, help="videos in the DuckDB dataset")
    p.add_argument("--video-frames", type=int, default=1800, help="frames of each of those")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--ref-mask-mib", type=float, default=205.0,
                   help="mask MiB per object-hour of real footage to compare states with "
                        "(synthetic shapes encode smaller)")
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args()
    out: dict = {"args": vars(args)}
    work = Path(tempfile.mkdtemp(prefix="bench-dataset-"))
    try:
        # 1. The long video: baseline (parts, every state) vs compacted and pruned.
        state_obj = state_bytes_per_object(args.image_size)
        print(f"state at {args.image_size} px: {state_obj / MIB:.3f} MiB per object")
        clip = generate(5, width=args.width, height=args.height, num_frames=1800,
                        num_objects=args.objects, enter_leave=False)  # its motion, looped
        reps = math.ceil(args.frames / 1800)
        long = {k: np.concatenate([m] * reps)[:args.frames] for k, m in clip.masks.items()}
        base = work / "baseline"
        write_video(base, "long", long, args.chunk_frames, int(state_obj * args.objects))
        out["baseline"] = per_hour(base)
        print(f"\n{args.frames} frames {args.width}x{args.height}, {args.objects} objects, "
              f"chunks of {args.chunk_frames}, per video-hour at {FPS:.0f} fps:")
        print(f"  baseline (parts, every state): {_fmt(out['baseline'])}")
        chunks = [(s, min(s + args.chunk_frames, args.frames))
                  for s in range(0, args.frames, args.chunk_frames)]
        out["ours"] = {}
        for setting in retention_settings(args.frames, args.chunk_frames):
            ours = work / f"ours-{setting.replace(':', '-')}"
            shutil.copytree(base, ours)
            loc = Location(str(ours))
            compact_video(loc, "long")
            keep = KeepStates.parse(setting)
            prune_states(loc, "_states/long", [
                state_path("long", 0, c) for c, (a, b) in enumerate(chunks)
                if not keep.keeps(a, b, last=c == len(chunks) - 1)])
            out["ours"][setting] = per_hour(ours)
            b, o = out["baseline"], out["ours"][setting]
            print(f"  compacted, --keep-states {setting}: {_fmt(o)}; mask files "
                  f"/{b['masks']['files'] / o['masks']['files']:.0f}, state bytes "
                  f"/{b['states']['MiB'] / o['states']['MiB']:.1f}")

        # 2. Per object-hour at 1080p and a 1024 px model.
        sizes = [(160, 90), (320, 180), (640, 360)]
        per_frame = [mask_bytes_per_object_frame(w, h, 300, 3, args.chunk_frames)
                     for w, h in sizes]
        slope = np.polyfit(np.log([h for _, h in sizes]), np.log(per_frame), 1)[0]
        mask_hour = per_frame[-1] * (1080 / sizes[-1][1]) ** slope * HOUR
        small = state_bytes_per_object(256)
        b = (small - state_obj) / (256**2 - args.image_size**2)
        state_1024 = state_obj + b * (1024**2 - args.image_size**2)
        out["extrapolated"] = {"mask_bytes_per_object_frame": dict(zip(
            [f"{w}x{h}" for w, h in sizes], per_frame, strict=True)), "slope": slope,
            "mask_MiB_per_object_hour_1080p": mask_hour / MIB,
            "state_MiB_per_object_1024px": state_1024 / MIB}
        print(f"\nper object-hour, 1080p at {FPS:.0f} fps, 1024 px model (mask bytes ~ "
              f"height^{slope:.2f} from {', '.join(f'{w}x{h}' for w, h in sizes)}):")
        print(f"  masks {mask_hour / MIB:.0f} MiB; a state {state_1024 / MIB:.2f} MiB per object")
        ref = args.ref_mask_mib
        for objects in (1, 10):
            files = [max(1, math.ceil(objects * m / (256 * MIB))) for m in (mask_hour, ref * MIB)]
            print(f"  {objects} object(s): mask files/hour {math.ceil(HOUR / args.chunk_frames)}"
                  f" parts -> {files[0]} compacted ({files[1]} at {ref:.0f} MiB/object-hour)")
        for setting in ("all", "every:9000", "every:27000", "last"):
            keep = KeepStates.parse(setting)
            n = sum(keep.keeps(s, s + args.chunk_frames, last=False)
                    for s in range(0, int(HOUR), args.chunk_frames)) + 1
            mib = n * state_1024 / MIB
            out["extrapolated"][f"states_{setting}"] = {"states": n, "MiB": mib}
            print(f"  --keep-states {setting}: {n} states, {mib:.0f} MiB per object-hour "
                  f"({mib / (mask_hour / MIB):.0%} of these masks, {mib / ref:.1%} of {ref:.0f} "
                  "MiB)")

        # 3. DuckDB: one object's track out of many videos, parts vs compacted.
        many = work / "many"
        masks = generate(9, width=args.width, height=args.height, num_frames=args.video_frames,
                         num_objects=args.objects, enter_leave=False).masks
        for i in range(args.videos):
            write_video(many, f"v{i:03d}", masks, args.chunk_frames, None)
        packed = work / "many-compacted"
        shutil.copytree(many, packed)
        for i in range(args.videos):
            compact_video(Location(str(packed)), f"v{i:03d}")
        target = f"v{args.videos // 2:03d}"
        t_parts, n_parts = duckdb_seconds(many, target, 2, args.repeat)
        t_packed, n_packed = duckdb_seconds(packed, target, 2, args.repeat)
        assert n_parts == n_packed == args.video_frames
        files = [len(list((d / "masks").rglob("*.parquet"))) for d in (many, packed)]
        out["duckdb"] = {"files": files, "parts_s": t_parts, "compacted_s": t_packed}
        print(f"\nDuckDB, one object's track from {args.videos} videos of {args.video_frames} "
              f"frames ({files[0]} parts vs {files[1]} compacted files), best of {args.repeat}: "
              f"{t_parts * 1000:.0f} ms vs {t_packed * 1000:.0f} ms = {t_parts / t_packed:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


def _fmt(d: dict) -> str:
    return ", ".join(f"{k} {v['files']:.0f} files {v['MiB']:.1f} MiB" for k, v in d.items())


if __name__ == "__main__":
    main()
