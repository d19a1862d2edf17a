"""A ready-to-run sample: one short synthetic video, its manifest and its truth.

The README demo and smoke tests need an input that exists everywhere without
a download. :func:`write_sample` makes it in well under a second.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sam_batch.synthetic.prompts import PromptKind, first_frame_prompts
from sam_batch.synthetic.render import generate
from sam_batch.synthetic.writers import write_davis_png, write_mp4


def write_sample(
    folder: str | os.PathLike[str],
    *,
    seed: int = 0,
    kind: PromptKind = "mask",
    video_id: str = "sample",
    width: int = 256,
    height: int = 192,
    num_frames: int = 48,
    num_objects: int = 3,
    ground_truth: bool = True,
    min_area: int = 64,
) -> tuple[Path, Path]:
    """Write ``<video_id>.mp4``, ``manifest.jsonl`` and (optionally) ``<video_id>_gt/``.

    The manifest has one line, ``{"video": <absolute path>, "video_id": ...,
    "prompts": [...]}``, with one ``kind`` prompt per object at the first
    frame where it shows ``min_area`` pixels (not on the sliver of an object
    just entering, which no user would click). ``<video_id>_gt/`` holds the DAVIS-style ground truth
    PNGs to score the demo's output against.

    >>> import tempfile
    >>> video, manifest = write_sample(tempfile.mkdtemp(), num_frames=6)
    >>> row = json.loads(manifest.read_text()); row["video_id"], len(row["prompts"])
    ('sample', 3)
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clip = generate(
        seed, width=width, height=height, num_frames=num_frames, num_objects=num_objects
    )
    video = write_mp4(clip, folder / f"{video_id}.mp4").path
    if ground_truth:
        write_davis_png(clip, folder / f"{video_id}_gt")
    row = {
        "video": str(video.resolve()),
        "video_id": video_id,
        "prompts": first_frame_prompts(clip, kind, min_area=min_area),
    }
    manifest = folder / "manifest.jsonl"
    manifest.write_text(json.dumps(row) + "\n")
    return video, manifest
