"""Where a frame becomes the model's input: on the host's threads, or on the model's device.

Both give sam2's own numbers bit for bit (``frames.prepare_frame`` is the
reference; ``resample`` is PIL's resize as integer tensor arithmetic). They
differ in what the host pays per frame and what crosses to the device:

- ``host``: PIL resizes and a table normalises on the prefetch threads; a
  float32 ``[3, S, S]`` frame (12 MB at 1024 px) goes to the device. Best where
  the device is the CPU itself.
- ``device``: the host only decodes; the decoded bytes (6 MB for 1080p) go to
  the device, which resizes and normalises them with a few integer kernels. On a
  GPU this takes the host's largest cost per frame (the resize, ~25 ms for 720p
  on one core of a 2-core CPU VM, ``bench/pipeline.py``) off the host.

``auto`` picks ``device`` for CUDA devices and ``host`` otherwise. A frame size
that the installed Pillow resizes differently from ``resample`` (checked once per
size, ``resample.pass_order``) is prepared on the host instead, with a warning.
"""

from __future__ import annotations

import functools
import logging
from typing import Literal

import numpy as np
import torch

from sam_batch.track import resample
from sam_batch.track.frames import normalised_table, prepare_frame

log = logging.getLogger("sam_batch")

Where = Literal["auto", "host", "device"]
PLACES: tuple[str, ...] = ("auto", "host", "device")


@functools.lru_cache(maxsize=8)
def _table_on(device: torch.device) -> torch.Tensor:
    return torch.from_numpy(normalised_table()).to(device)


def normalise(resized: torch.Tensor) -> torch.Tensor:
    """``[3, S, S]`` uint8 -> float32, on its device: sam2's loader's numbers, by table.

    >>> x = torch.arange(256, dtype=torch.uint8).view(1, 16, 16).expand(3, 16, 16)
    >>> bool(torch.equal(normalise(x)[0].flatten(), torch.from_numpy(normalised_table()[0])))
    True
    """
    channels = resized.shape[0]
    index = resized.reshape(channels, -1).long()
    return _table_on(resized.device).gather(1, index).view(resized.shape)


class FramePreparer:
    """Splits sam2's preprocessing into a host step (on prefetch threads) and a device
    step (on the model's thread, at the moment sam2 asks for the frame)."""

    def __init__(self, image_size: int, device: torch.device, where: Where = "auto"):
        if where not in PLACES:
            raise ValueError(f"frames are prepared on one of {PLACES}, not {where!r}")
        self.image_size = image_size
        self.target = device
        self.resizes_on_device = where == "device" or (where == "auto" and device.type == "cuda")
        self._warned: set[tuple[int, int]] = set()

    def _device_order(self, height: int, width: int) -> resample.Order | None:
        order = resample.pass_order(height, width, self.image_size, str(self.target))
        if order is None and (height, width) not in self._warned:
            self._warned.add((height, width))
            log.warning("PIL resizes %dx%d frames differently from sam_batch's device resize; "
                        "those frames are resized on the host", width, height)
        return order

    def host(self, rgb: np.ndarray) -> torch.Tensor:
        """The host's part: the decoded frame itself, or the finished float32 frame."""
        if self.resizes_on_device and self._device_order(*rgb.shape[:2]) is not None:
            return torch.from_numpy(np.ascontiguousarray(rgb))
        return prepare_frame(rgb, self.image_size)

    def device(self, prepared: torch.Tensor) -> torch.Tensor:
        """The device's part: ``[3, S, S]`` float32 on the model's device."""
        if prepared.dtype != torch.uint8:  # prepared on the host already
            return prepared.to(self.target).float()
        frame = prepared.to(self.target, non_blocking=True)
        order = self._device_order(*frame.shape[:2])
        return normalise(resample.resize(frame, self.image_size, order))

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        """Both parts at once: a frame the model reads now (prompts, seeds)."""
        return self.device(self.host(rgb))
