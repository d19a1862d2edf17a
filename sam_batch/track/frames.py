"""Turn decoded RGB frames into the tensors SAM 2 sees, exactly as its own loader does.

At random weights the mask logits sit near zero, so a different resize filter, a
float32 instead of a float64 division, or another order of operations flips
pixels. These steps mirror ``sam2.utils.misc._load_img_as_tensor`` and
``load_video_frames_from_jpg_images`` operation for operation: PIL resize to a
square with its default (bicubic) filter, divide by 255 in float64, store as
float32, subtract the ImageNet mean, divide by the std; the per-pixel steps after
the resize are read from a table of their results (``normalised_table``).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch
from PIL import Image

IMG_MEAN = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32)[:, None, None]
IMG_STD = torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32)[:, None, None]


def normalised_table() -> np.ndarray:
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


_TABLE = normalised_table()


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
        # A uint8 index is always within the 256-entry table: mode="clip" is exact, and
        # spares numpy's bounds-checked path, which with ``out=`` buffers a copy (2x).
        np.take(_TABLE[c], resized[..., c], out=image[c], mode="clip")
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
        from sam_batch.media.decode import read_frames

        return read_frames(self.info, start, end, self.storage_options)


#: A sparse read seeks (reopens and seeks the file) rather than decode through more
#: than this many frames, and cuts runs at keyframes past this many frames, so that
#: several decode at once.
SEEK_SKIP, RUN_SPAN = 24, 120


class SparseFrames:
    """Every frame of ``indices`` from ``frames``, renumbered ``0..len-1``: a cheap pass.

    The sparse pass that seeds parallel segments tracks a video as if it were
    this short one. Decoding a sample means decoding from the keyframe before it,
    so samples are read in runs: a new run seeks to a keyframe where that skips
    enough frames (``runs``); within a GOP every frame is decoded anyway, which
    on long-GOP video costs nearly a full decode. With ``workers`` > 1 up to that
    many runs decode at once, ahead of the model, and are handed over in order.

    >>> video = np.arange(5, dtype=np.uint8)[:, None, None, None].repeat(3, 3)
    >>> s = SparseFrames(ArrayFrames(video), [0, 2, 4])
    >>> [(i, int(rgb[0, 0, 0])) for i, rgb in s.read(1, 3)]
    [(1, 2), (2, 4)]
    """

    def __init__(self, frames: FrameSource, indices: list[int] | tuple[int, ...],
                 workers: int = 1):
        self._frames = frames
        self.indices = tuple(indices)
        self._local = {f: i for i, f in enumerate(self.indices)}
        self.num_frames, self.height, self.width = len(self.indices), frames.height, frames.width
        info = getattr(frames, "info", None)
        self._keyframes = tuple(getattr(info, "keyframes", ()))
        self.workers = max(1, workers)

    def runs(self, start: int, end: int) -> list[tuple[int, int]]:
        """Samples ``[a, b)`` decoded in one go; a run ends before a keyframe that skips
        more than ``SEEK_SKIP`` frames, or that cuts a run of ``RUN_SPAN`` frames.

        >>> s = SparseFrames(ArrayFrames(np.zeros((200, 2, 2, 3), np.uint8)), range(0, 200, 40))
        >>> s._keyframes = (0, 70, 150)
        >>> s.runs(0, 5)  # frames 0 40 | 80 120 | 160: seeks to 70 and 150
        [(0, 2), (2, 4), (4, 5)]
        """
        out, a = [], start
        for i in range(start + 1, end):
            k = bisect.bisect_right(self._keyframes, self.indices[i]) - 1
            key, prev = (self._keyframes[k] if k >= 0 else -1), self.indices[i - 1]
            # Seek where it skips enough frames to pay for a seek, or to cut a long run.
            if key > prev and (key - prev > SEEK_SKIP or prev - self.indices[a] >= RUN_SPAN):
                out.append((a, i))
                a = i
        return [*out, (a, end)] if start < end else []

    def _run(self, a: int, b: int) -> Iterator[tuple[int, np.ndarray]]:
        with contextlib.closing(self._frames.read(self.indices[a], self.indices[b - 1] + 1)) as it:
            for idx, rgb in it:
                local = self._local.get(idx)
                if local is not None and a <= local < b:
                    yield local, rgb

    def read(self, start: int, end: int) -> Iterator[tuple[int, np.ndarray]]:
        start, end = max(start, 0), min(end, self.num_frames)
        runs = self.runs(start, end)
        if self.workers == 1 or len(runs) == 1:
            for a, b in runs:
                yield from self._run(a, b)
            return
        todo = iter(runs)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="sparse-decode") as pool:
            ahead = deque(pool.submit(lambda r: list(self._run(*r)), r)
                          for r in itertools.islice(todo, self.workers))
            try:
                while ahead:
                    frames = ahead.popleft().result()
                    following = next(todo, None)
                    if following is not None:
                        ahead.append(pool.submit(lambda r: list(self._run(*r)), following))
                    yield from frames
            finally:
                for f in ahead:
                    f.cancel()
