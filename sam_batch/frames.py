"""Turn decoded RGB frames into the tensors SAM 2 sees, exactly as its own loader does.

At random weights the mask logits sit near zero, so a different resize filter, a
float32 instead of a float64 division, or another order of operations flips
pixels. These steps mirror ``sam2.utils.misc._load_img_as_tensor`` and
``load_video_frames_from_jpg_images`` operation for operation: PIL resize to a
square with its default (bicubic) filter, divide by 255 in float64, store as
float32, subtract the ImageNet mean, divide by the std.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from PIL import Image

IMG_MEAN = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32)[:, None, None]
IMG_STD = torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32)[:, None, None]


def prepare_frame(rgb: np.ndarray, image_size: int) -> torch.Tensor:
    """``[H, W, 3]`` uint8 RGB -> normalised ``[3, S, S]`` float32, as sam2 prepares it.

    >>> prepare_frame(np.zeros((48, 64, 3), np.uint8), 32).shape
    torch.Size([3, 32, 32])
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] uint8 RGB frame, got {rgb.dtype} {rgb.shape}")
    resized = np.array(Image.fromarray(rgb).resize((image_size, image_size)))
    image = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)
    image -= IMG_MEAN
    image /= IMG_STD
    return image


class FrameSource(Protocol):
    """Where a tracker gets frames: a size and ranges ``[start, end)`` in order."""

    num_frames: int
    height: int
    width: int

    def read(self, start: int, end: int) -> Iterator[tuple[int, np.ndarray]]: ...


def read_one(frames: FrameSource, frame_idx: int) -> np.ndarray:
    """One frame, closing the reader at once (a video reader holds a file open)."""
    with contextlib.closing(frames.read(frame_idx, frame_idx + 1)) as it:
        for idx, rgb in it:
            if idx == frame_idx:
                return rgb
    raise IndexError(f"frame {frame_idx} not delivered by the frame source")


class ArrayFrames:
    """Frames already in memory (``[T, H, W, 3]`` uint8): tests and small clips.

    >>> ArrayFrames(np.zeros((3, 4, 5, 3), np.uint8)).num_frames
    3
    """

    def __init__(self, frames: np.ndarray):
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"expected [T, H, W, 3] uint8 frames, got {frames.dtype} {frames.shape}"
            )
        self._frames = frames
        self.num_frames, self.height, self.width = frames.shape[:3]

    def read(self, start: int, end: int) -> Iterator[tuple[int, np.ndarray]]:
        for i in range(max(start, 0), min(end, self.num_frames)):
            yield i, self._frames[i]


class VideoFrames:
    """Frames of a video file at any fsspec URL, decoded as they are asked for."""

    def __init__(self, info: "VideoInfo", storage_options: dict | None = None):  # noqa: F821,UP037
        self.info = info
        self.storage_options = storage_options or {}
        self.num_frames, self.height, self.width = info.num_frames, info.height, info.width

    @classmethod
    def open(cls, url: str, storage_options: dict | None = None) -> VideoFrames:
        from sam_batch.video import probe

        return cls(probe(url, storage_options), storage_options)

    def read(self, start: int, end: int) -> Iterator[tuple[int, np.ndarray]]:
        from sam_batch.video import read_frames

        return read_frames(self.info, start, end, self.storage_options)
