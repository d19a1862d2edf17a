"""What the benchmarks share: a test video, its frames on disk, and the official run.

Both sides of every comparison run the same random-weight model (seeded) on the
same decoded pixels: ours decodes the mp4 as it goes, the official predictor
loads the decoded frames from a folder through its own loader.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sam_batch.media.decode import read_frames
from sam_batch.synthetic import first_frame_prompts, generate, write_mp4

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def make_video(folder: Path, frames: int, width: int = 320, height: int = 240,
               objects: int = 1, seed: int = 0) -> tuple[Path, list[dict]]:
    """An mp4 of ``frames`` frames with box prompts for each object on frame 0."""
    folder.mkdir(parents=True, exist_ok=True)
    clip = generate(seed, width=width, height=height, num_frames=frames, num_objects=objects,
                    enter_leave=False)
    path = folder / f"video-{frames}.mp4"
    write_mp4(clip, path)
    prompts = [{**p, "frame": 0} for p in first_frame_prompts(clip, "box")]
    return path, prompts


def frames_folder(video: Path, folder: Path, frames: int) -> Path:
    """The first ``frames`` decoded frames as lossless files the official loader reads."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, rgb in read_frames(str(video), 0, frames):
        Image.fromarray(rgb).save(folder / f"{i:05d}.jpg", format="PNG")
    return folder


def official_predictor(image_size: int) -> torch.nn.Module:
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(0)
    return build_sam2_video_predictor(
        CONFIG, device="cpu", hydra_overrides_extra=[f"++model.image_size={image_size}"]
    )


def run_official(predictor: torch.nn.Module, folder: Path, prompts: list[dict]) -> int:
    """The official way: load all frames, add prompts, propagate; masks to the CPU."""
    from sam_batch.plan.prompts import Prompt

    n = 0
    with torch.inference_mode():
        state = predictor.init_state(str(folder))
        for p in map(Prompt.from_dict, prompts):
            predictor.add_new_points_or_box(state, p.frame, p.obj_id, box=list(p.box))
        for _, _, logits in predictor.propagate_in_video(state):
            (logits > 0).cpu().numpy()
            n += 1
    return n


def run_chunked(model, video: Path, frames: int, prompts: list[dict], chunk: int) -> int:
    """Our path on the first ``frames`` frames: a fresh tracker per chunk, fed only the
    deserialized state, every mask RLE-encoded as the writer does. Returns frames tracked."""
    from sam_batch.dataset.rle import encode
    from sam_batch.plan.prompts import Prompt
    from sam_batch.track.frames import VideoFrames
    from sam_batch.track.state import MemoryState
    from sam_batch.track.tracker import ChunkTracker

    source = VideoFrames.open(str(video))
    source.num_frames = frames  # the first N frames of the video
    state = ChunkTracker(model).start(source, [Prompt.from_dict(p) for p in prompts])
    n = 0
    for start in range(0, frames, chunk):
        state = MemoryState.from_bytes(state.to_bytes(), model.identity)
        run = ChunkTracker(model).track(state, source, min(start + chunk, frames))
        for out in run:
            for mask in out.masks:
                encode(mask)
            n += 1
        state = run.state
    return n


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def emit(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def parse_result(stdout: str) -> dict:
    line = [x for x in stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def silence() -> None:
    import os
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore")
    np.seterr(all="ignore")
