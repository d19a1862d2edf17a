"""Turn decoded RGB frames into the tensors SAM 2 sees, exactly as its own loader does.

At random weights the mask logits sit near zero, so a different resize filter, a
float32 instead of a float64 division, or another order of operations flips
pixels. These steps mirror ``sam2.utils.misc._load_img_as_tensor`` and
``load_video_frames_from_jpg_images`` operation for operation: PIL resize to a
square with its default (bicubic) filter, divide by 255 in float64, store as
float32, subtract the ImageNet mean, divide by the std; the per-pixel steps after
the resize are read from a table of their results (``_normalised_table``).
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


def _normalised_table() -> np.ndarray:
    """``[3, 256]`` float32: what sam2's loader makes of each byte value in each channel.

    After the resize, every step of sam2's preprocessing (float64 divide by 255, cast
    to float32, subtract the channel mean, divide by the channel std, all IEEE
    correctly rounded) maps one byte of one channel to one float32, whatever its
    neighbours. So the table, computed with those very operations, gives the same
    bits as running them on every pixel, at a fraction of the cost (no 25 MB float64
    image per 1024-px frame).
    """
    values = torch.from_numpy(np.arange(256)[None, None, :] / 255.0).to(torch.float32)
    values = values.expand(3, 1, 256).clone()
    values -= IMG_MEAN
    values /= IMG_STD
    return values[:, 0, :].numpy()


_TABLE = _normalised_table()


def prepare_frame(rgb: np.ndarray, image_size: int) -> torch.Tensor:
    """``[H, W, 3]`` uint8 RGB -> normalised ``[3, S, S]`` float32, as sam2 prepares it.

    >>> prepare_frame(np.zeros((48, 64, 3), np.uint8), 32).shape
    torch.Size([3, 32, 32])
    >>> rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    >>> bool(torch.equal(prepare_frame(rgb, 32), prepare_frame_by_steps(rgb, 32)))
    True
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] uint8 RGB frame, got {rgb.dtype} {rgb.shape}")
    resized = np.asarray(Image.fromarray(rgb).resize((image_size, image_size)))
    image = np.empty((3, image_size, image_size), np.float32)
    for c in range(3):
        np.take(_TABLE[c], resized[..., c], out=image[c])
    return torch.from_numpy(image)


def prepare_frame_by_steps(rgb: np.ndarray, image_size: int) -> torch.Tensor:
    """``prepare_frame`` operation for operation as sam2's loader runs it (the reference)."""
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
        from sam_batch.media.video import probe

        return cls(probe(url, storage_options), storage_options)

    def read(self, start: int, end: int) -> Iterator[tuple[int, np.ndarray]]:
        from sam_batch.media.video import read_frames

        return read_frames(self.info, start, end, self.storage_options)


class SparseFrames:
    """Every frame of ``indices`` from ``frames``, renumbered ``0..len-1``: a cheap pass.

    The sparse pass that seeds parallel segments tracks a video as if it were
    this short one; decoding still walks the range, SAM 2 sees only the samples.

    >>> video = np.arange(5, dtype=np.uint8)[:, None, None, None].repeat(3, 3)
    >>> s = SparseFrames(ArrayFrames(video), [0, 2, 4])
    >>> [(i, int(rgb[0, 0, 0])) for i, rgb in s.read(1, 3)]
    [(1, 2), (2, 4)]
    """

    def __init__(self, frames: FrameSource, indices: list[int] | tuple[int, ...]):
        self._frames = frames
        self.indices = tuple(indices)
        self._local = {f: i for i, f in enumerate(self.indices)}
        self.num_frames, self.height, self.width = len(self.indices), frames.height, frames.width

    def read(self, start: int, end: int) -> Iterator[tuple[int, np.ndarray]]:
        start, end = max(start, 0), min(end, self.num_frames)
        if start >= end:
            return
        with contextlib.closing(self._frames.read(self.indices[start],
                                                  self.indices[end - 1] + 1)) as it:
            for idx, rgb in it:
                local = self._local.get(idx)
                if local is not None and start <= local < end:
                    yield local, rgb
