"""Training clips: synthetic videos turned into what SAM 2's training step consumes.

A clip is a few frames of one synthetic scene with its exact per-object masks.
Frames are rendered at a video size (like the videos users run), then prepared
exactly as the video predictor prepares them (``sam_batch.track.frames.prepare_frame``:
PIL bicubic resize to the model's square size, /255, ImageNet mean/std), so the
model learns on the pixels it will see at inference. Masks are brought to the
model's size by area averaging. Each object visible on the first frame gets a
first-frame prompt drawn the way SAM 2's training draws them
(``training/model/sam2.py``): its mask, its box with noise, or a click sampled
uniformly inside it.

Seeds: training videos use seeds from :data:`TRAIN_SEED_BASE` up, held-out
evaluation videos (``bench/quality.py``, the shipped model's tests) use seeds
below :data:`HELD_OUT_SEEDS_END`, so no held-out scene is ever trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sam_batch.synthetic import generate
from sam_batch.track.frames import prepare_frame

#: Training video seeds start here (and go up by one per training video).
TRAIN_SEED_BASE = 10_000
#: Held-out seeds are ``range(HELD_OUT_SEEDS_END)``; never used for training.
HELD_OUT_SEEDS_END = 1_000
#: Video sizes (width, height) training clips are rendered at before the resize.
VIDEO_SIZES = ((256, 256), (256, 256), (320, 240), (192, 192), (240, 320))
#: Pixels at model size an object needs on a frame to be prompted there. Held-out
#: videos prompt an entering object where it first shows 16 pixels at 256x256, about
#: 4 at the model's 128: training prompts such slivers too.
MIN_PROMPT_AREA = 4
PROMPT_KINDS = ("mask", "box", "points")


@dataclass
class Clip:
    """One training sample, everything at the model's input size ``S``."""

    images: torch.Tensor  # [T, 3, S, S] normalised, as the video predictor feeds SAM 2
    masks: torch.Tensor  # [N, T, S, S] bool ground truth of the prompted objects
    prompt_kind: str  # "mask", "box" or "points", for every object of the clip
    point_coords: torch.Tensor  # [N, P, 2] model pixels (a box is its two corners)
    point_labels: torch.Tensor  # [N, P] SAM labels: 1 click, 2/3 box corners
    #: Each object's prompted frame. Objects that enter later are prompted where they
    #: first show, as users (and the DAVIS rule) prompt them: the frames before are
    #: tracked from a prompt in their future and must come out empty.
    cond_frames: tuple[int, ...] = ()

    def groups(self) -> list[tuple[int, list[int]]]:
        """``(prompted frame, object rows)`` of the objects sharing each prompted frame."""
        frames = self.cond_frames or (0,) * len(self.masks)
        return [(f, [i for i, g in enumerate(frames) if g == f]) for f in sorted(set(frames))]


def make_clip(seed: int, image_size: int, num_frames: int, rng: np.random.Generator,
              max_objects: int = 4, prompt_probs: tuple[float, float, float] = (0.4, 0.3, 0.3),
              later_prompt_prob: float = 0.2, kind: str | None = None) -> Clip | None:
    """One training clip from video ``seed``, or None when no object is ever visible.

    The clip's prompt frame is the first, or with ``later_prompt_prob`` a random one
    (SAM 2's ``rand_init_cond_frames``): then earlier frames are tracked from a prompt
    in their future, which the video predictor does for objects prompted late. An
    object not visible there is prompted on the first frame after it where it is
    (else the last before it), as an object entering the video is. ``kind`` fixes
    the prompt kind (else it is drawn from ``prompt_probs``).

    >>> c = make_clip(10_000, 64, 3, np.random.default_rng(0))
    >>> c.images.shape[1:], c.masks.shape[1:], c.prompt_kind in PROMPT_KINDS
    (torch.Size([3, 64, 64]), torch.Size([3, 64, 64]), True)
    >>> all(c.masks[i, f].sum() >= MIN_PROMPT_AREA for i, f in enumerate(c.cond_frames))
    True
    """
    if seed < HELD_OUT_SEEDS_END:
        raise ValueError(f"seed {seed} is a held-out seed (< {HELD_OUT_SEEDS_END})")
    objects = int(rng.integers(2, max_objects + 1))
    width, height = VIDEO_SIZES[int(rng.integers(len(VIDEO_SIZES)))]
    # sam_batch.synthetic needs 8 frames for a crossing of look-alikes.
    crossing = num_frames >= 8 and bool(rng.random() < 0.3)
    video = generate(seed, width=width, height=height, num_frames=num_frames,
                     num_objects=objects, lookalike_crossing=crossing,
                     enter_leave=bool(rng.random() < 0.5))
    images = torch.stack([prepare_frame(rgb, image_size) for rgb in video.frames])
    truth = torch.from_numpy(np.stack([video.masks[o] for o in video.obj_ids])).float()
    truth = F.interpolate(truth, size=(image_size, image_size), mode="area") > 0.5
    base = int(rng.integers(num_frames)) if rng.random() < later_prompt_prob else 0
    shows = (truth.flatten(2).sum(2) >= MIN_PROMPT_AREA).numpy()  # [N, T]
    keep, cond_frames = [], []
    for i, row in enumerate(shows):
        frames = np.flatnonzero(row)
        if len(frames):
            after = frames[frames >= base]
            keep.append(i)
            cond_frames.append(int(after[0] if len(after) else frames[-1]))
    if not keep:
        return None
    truth = truth[keep]
    # One kind per clip: sam2's track step takes points or a mask for a whole batch.
    kind = kind or str(rng.choice(PROMPT_KINDS, p=list(prompt_probs)))
    prompts = [sample_prompt(truth[i, f].numpy(), kind, rng) for i, f in enumerate(cond_frames)]
    coords, labels = pad_points(prompts)
    return Clip(images, truth, kind, coords, labels, tuple(cond_frames))


def sample_prompt(mask: np.ndarray, kind: str, rng: np.random.Generator
                  ) -> tuple[list[list[float]], list[int]]:
    """Points and SAM labels for one object: a noisy box or one uniform click.

    Box noise follows SAM 2's ``sample_box_points`` (10% of the box side per
    corner coordinate); a mask prompt also gets a click (unused by the model).
    """
    ys, xs = np.nonzero(mask)
    if kind == "box":
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        noise = rng.normal(0, 0.1, 4) * np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
        noise = np.clip(noise, -8, 8)
        box = np.array([x0, y0, x1, y1], float) + noise
        box = np.clip(box, 0, mask.shape[1] - 1)
        (bx0, bx1), (by0, by1) = sorted(box[[0, 2]]), sorted(box[[1, 3]])
        return [[bx0, by0], [bx1, by1]], [2, 3]
    i = int(rng.integers(len(xs)))
    return [[float(xs[i]) + 0.5, float(ys[i]) + 0.5]], [1]


def pad_points(prompts: list[tuple[list[list[float]], list[int]]]
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-object points into ``[N, P, 2]`` / ``[N, P]``, padding with label -1."""
    width = max(len(c) for c, _ in prompts)
    coords = torch.zeros(len(prompts), width, 2)
    labels = torch.full((len(prompts), width), -1, dtype=torch.int32)
    for i, (c, lab) in enumerate(prompts):
        coords[i, :len(c)] = torch.tensor(c, dtype=torch.float32)
        labels[i, :len(lab)] = torch.tensor(lab, dtype=torch.int32)
    return coords, labels


def correction_click(pred: torch.Tensor, truth: torch.Tensor, rng: np.random.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """One corrective click per object, as SAM 2's training adds them: uniformly in
    the error region, positive where the object was missed, negative where the
    prediction spilled over. ``pred``/``truth`` are ``[N, S, S]`` bool; returns
    ``[N, 1, 2]`` coords and ``[N, 1]`` labels (label -1, no click, if no error)."""
    coords = torch.zeros(len(pred), 1, 2)
    labels = torch.full((len(pred), 1), -1, dtype=torch.int32)
    for i, (p, t) in enumerate(zip(pred, truth, strict=True)):
        fn, fp = (t & ~p).nonzero(), (p & ~t).nonzero()
        errors = torch.cat([fn, fp])
        if len(errors) == 0:
            continue
        j = int(rng.integers(len(errors)))
        y, x = errors[j].tolist()
        coords[i, 0] = torch.tensor([x + 0.5, y + 0.5])
        labels[i, 0] = 1 if j < len(fn) else 0
    return coords, labels
