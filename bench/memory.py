"""Peak memory on N and 10·N frames: our chunked tracker vs the official predictor.

Each of the four measurements runs in a fresh process (peak RSS is per process);
this script starts them side by side in one run and prints both growth ratios
RSS(10·N) / RSS(N). Ours streams frames from the mp4 and keeps only the memory
SAM 2 reads, so its ratio should stay near 1 (target <= 1.1); the official
predictor holds every frame and every output, so its ratio is what it is.

    python bench/memory.py --frames 30
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TQDM_DISABLE", "1")

import _common as common


def measure_ours(video: Path, frames: int, prompts: list, image_size: int, chunk: int) -> dict:
    from sam_batch.track.model import ModelSpec, load_model

    model = load_model(ModelSpec(random_weights=True, image_size=image_size, device="cpu"))
    n = common.run_chunked(model, video, frames, prompts, chunk)
    return {"frames": n, "peak_rss_mb": common.peak_rss_mb()}


def measure_official(folder: Path, prompts: list, image_size: int) -> dict:
    predictor = common.official_predictor(image_size)
    n = common.run_official(predictor, folder, prompts)
    return {"frames": n, "peak_rss_mb": common.peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=30, help="N")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--measure", choices=["ours", "official"])
    ap.add_argument("--video")
    ap.add_argument("--folder")
    ap.add_argument("--prompts")
    args = ap.parse_args()
    common.silence()
    if args.measure:  # one measurement, in this fresh process
        import json

        prompts = json.loads(args.prompts)
        if args.measure == "ours":
            result = measure_ours(Path(args.video), args.frames, prompts, args.image_size,
                                  args.chunk)
        else:
            result = measure_official(Path(args.folder), prompts, args.image_size)
        common.emit(result)
        return

    import json

    work = Path(tempfile.mkdtemp(prefix="sam_batch_bench_memory_"))
    n, big = args.frames, 10 * args.frames
    video, prompts = common.make_video(work, big)
    folders = {k: common.frames_folder(video, work / f"frames-{k}", k) for k in (n, big)}
    results = {}
    for side in ("ours", "official"):
        for k in (n, big):
            cmd = [sys.executable, __file__, "--measure", side, "--frames", str(k),
                   "--image-size", str(args.image_size), "--chunk", str(args.chunk),
                   "--video", str(video), "--folder", str(folders[k]),
                   "--prompts", json.dumps(prompts)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[(side, k)] = common.parse_result(done.stdout)
            print(f"{side:>8} {k:>5} frames: peak RSS {results[(side, k)]['peak_rss_mb']:8.1f} MB",
                  flush=True)
    ours = results[("ours", big)]["peak_rss_mb"] / results[("ours", n)]["peak_rss_mb"]
    official = results[("official", big)]["peak_rss_mb"] / results[("official", n)]["peak_rss_mb"]
    print(f"growth RSS({big})/RSS({n}): ours {ours:.3f} (target <= 1.1), official {official:.3f}")


if __name__ == "__main__":
    main()
