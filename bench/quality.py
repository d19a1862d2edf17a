"""Tracking quality of the shipped model: DAVIS J&F on held-out synthetic videos.

Every run goes through ``sam-batch run`` (``sam_batch.driver.job.run``) with
``model="sam-batch-tiny"`` (no checkpoint: the shipped weights), on mp4 files
of synthetic videos whose seeds are held out from training (seeds
``0..videos-1``; training uses seeds >= 10 000), each object prompted on its
first visible frame (its mask by default: the DAVIS semi-supervised rule).
Masks are scored with ``sam_batch.evaluation.evaluate`` against DAVIS palette PNGs of the
exact ground truth.

Rows:

- ``single``: one chunk per video (one uninterrupted pass);
- ``chunked``: ``--chunk`` frames per chunk, memory handed on: must equal
  ``single`` mask for mask (``same`` column);
- ``segments=S``: S parallel segments, seeded by the sparse pass and
  stitched (runs where JobConfig has ``segments``);
- ``discovery``: no prompts, ``discover="every:K"``; scored by IDF1 of the
  discovered tracks against the truth (runs where JobConfig has ``discover``).

    python bench/quality.py                 # 20 videos
    python bench/quality.py --videos 4 --frames 24 --skip discovery
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


def make_videos(root: Path, n: int, frames: int, size: int, kind: str
                ) -> tuple[Path, Path, Path]:
    """Held-out mp4s, their DAVIS ground truth, and two manifests (prompted, unprompted)."""
    from sam_batch.synthetic import first_frame_prompts, generate, write_davis_png, write_mp4

    rows, bare = [], []
    for seed in range(n):
        clip = generate(seed, width=size, height=size, num_frames=frames,
                        lookalike_crossing=bool(seed % 2))
        vid = f"heldout-{seed:02d}"
        path = write_mp4(clip, root / "videos" / f"{vid}.mp4").path
        write_davis_png(clip, root / "gt" / vid)
        rows.append({"video": str(path), "video_id": vid,
                     "prompts": first_frame_prompts(clip, kind, min_area=16)})
        bare.append({"video": str(path), "video_id": vid})
    prompted, unprompted = root / "manifest.jsonl", root / "manifest-bare.jsonl"
    prompted.write_text("".join(json.dumps(r) + "\n" for r in rows))
    unprompted.write_text("".join(json.dumps(r) + "\n" for r in bare))
    return prompted, unprompted, root / "gt"


def masks_of(url: str) -> dict[str, dict[int, dict[int, str]]]:
    """``{video_id: {frame_idx: {obj_id: rle}}}`` of a dataset."""
    from sam_batch.dataset.reader import Dataset

    out: dict[str, dict[int, dict[int, str]]] = {}
    for r in Dataset(url).masks().to_pylist():
        out.setdefault(r["video_id"], {}).setdefault(r["frame_idx"], {})[r["obj_id"]] = r["rle"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=20, help="held-out seeds 0..N-1")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", type=int, default=256, help="video width and height")
    ap.add_argument("--prompt", choices=["mask", "box", "points"], default="mask")
    ap.add_argument("--model", default="sam-batch-tiny")
    ap.add_argument("--chunk", type=int, default=8, help="chunk_frames of the chunked run")
    ap.add_argument("--segments", type=int, nargs="*", default=[2, 3])
    ap.add_argument("--discover", default="every:8")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--skip", nargs="*", default=[], choices=["segments", "discovery"])
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    common.silence()
    from sam_batch.config import JobConfig
    from sam_batch.driver.job import run
    from sam_batch.evaluation.evaluate import evaluate, identity_f1

    work = Path(tempfile.mkdtemp(prefix="sam_batch_bench_quality_"))
    manifest, bare, gt = make_videos(work, args.videos, args.frames, args.size, args.prompt)
    fields = JobConfig.field_names()
    base = {"model": args.model, "workers": args.workers, "cpus_per_worker": 1,
            "progress": "off", "device": "cpu"}

    def job(name: str, source: Path, **kw: object) -> tuple[str, float]:
        out = str(work / name)
        t0 = time.perf_counter()
        summary = run(JobConfig(manifest=str(source), output=out, **base, **kw))
        assert summary.ok, summary.text()
        return out, time.perf_counter() - t0

    runs: list[tuple[str, dict]] = [
        ("single", {"chunk_frames": args.frames}),
        (f"chunked ({args.chunk} frames)", {"chunk_frames": args.chunk}),
    ]
    # -- 2 and 3 segments, stitched (JobConfig key ``segments``) -----------------------
    if "segments" in fields and "segments" not in args.skip:
        runs += [(f"segments={s}", {"chunk_frames": args.chunk, "segments": s})
                 for s in args.segments]
    results: dict[str, dict] = {}
    reference = None
    for name, kw in runs:
        out, wall = job(name.split(" ")[0], manifest, **kw)
        report = evaluate(out, str(gt))
        masks = masks_of(out)
        reference = reference or masks
        results[name] = {"J&F": report.overall.jf, "J": report.overall.j.mean,
                         "F": report.overall.f.mean, "wall_s": wall,
                         "same_as_single": masks == reference}
    # -- discovery IDF1 (JobConfig key ``discover``, e.g. "every:8") ------------------
    if "discover" in fields and "discovery" not in args.skip:
        out, wall = job("discovery", bare, chunk_frames=args.chunk, discover=args.discover)
        idf1 = identity_f1(out, str(gt))
        results[f"discovery ({args.discover})"] = {"IDF1": idf1, "wall_s": wall}

    print(f"{args.model}: {args.videos} held-out videos (seeds 0..{args.videos - 1}), "
          f"{args.frames} frames, {args.size}x{args.size}, {args.prompt} prompts; DAVIS J&F")
    print(f"{'run':<24} {'J&F':>6} {'J':>6} {'F':>6} {'IDF1':>6} {'same':>5} {'wall s':>7}")
    for name, r in results.items():
        def cell(key: str, r: dict = r) -> str:
            return f"{r[key]:>6.3f}" if key in r else f"{'-':>6}"
        same = {True: "yes", False: "no"}.get(r.get("same_as_single"), "-")
        print(f"{name:<24} {cell('J&F')} {cell('J')} {cell('F')} {cell('IDF1')} {same:>5} "
              f"{r['wall_s']:>7.1f}")
    result = {"model": args.model, "videos": args.videos, "frames": args.frames,
              "size": args.size, "prompt": args.prompt, "runs": results}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    common.emit(result)


if __name__ == "__main__":
    main()
