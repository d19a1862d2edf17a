"""PIL's bicubic resize, byte for byte, as integer tensor arithmetic on any torch device.

sam2's loader resizes every frame with PIL, and at random or real weights a
different filter flips mask pixels (``frames.py``). On a GPU actor that resize
is the host's largest cost per frame: ~25 ms for 720p -> 1024 px on one core
(``bench/pipeline.py``), more than the model's whole step on an A100, so each GPU
would need several host cores for it alone. But after its coefficients PIL's
resample is integer arithmetic: one pass along each axis, each output byte
``clip8((2**21 + sum(pixel * k)) >> 22)`` with ``k`` the filter's weights in
22-bit fixed point, the first pass's output clipped to bytes before the second
reads it. The same sums on int32 tensors are exact integers well inside int32
(|sum| < 255 * 1.3 * 2**22), so they give the same bytes in any order on any
device, and the resize can run where the model runs while the host only decodes.

The weights are computed as Pillow's ``precompute_coeffs`` and
``normalize_coeffs_8bpc`` (``src/libImaging/Resample.c``) compute them, IEEE double
for double. Which pass runs first depends on the Pillow release: recent ones run the
vertical pass first when the height shrinks more than twice as much as the width
(python-pillow/Pillow#9549), older ones always the horizontal pass first. So
``pass_order`` checks a frame size against the installed Pillow before anything
relies on it.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
import torch
from PIL import Image

PRECISION_BITS = 22
_HALF = 1 << (PRECISION_BITS - 1)
_SUPPORT = 2.0  # the bicubic filter's support at scale 1

Order = Literal["hv", "vh"]


def _bicubic(x: float) -> float:
    """Pillow's ``bicubic_filter`` (a = -0.5), operation for operation."""
    if x < 0.0:
        x = -x
    if x < 1.0:
        return ((-0.5 + 2.0) * x - (-0.5 + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * -0.5
    return 0.0


@functools.lru_cache(maxsize=64)
def axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(index, weight)``, each ``[out_size, taps]``: the input positions each output
    reads and their 22-bit fixed-point weights (0 past the filter's reach).

    >>> index, weight = axis_weights(4, 2)
    >>> index.tolist()
    [[0, 1, 2, 3, 0, 0, 0, 0, 0], [0, 1, 2, 3, 0, 0, 0, 0, 0]]
    >>> int(weight.sum(1)[0]) == 1 << PRECISION_BITS
    True
    """
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    taps = math.ceil(support) * 2 + 1
    inv_filterscale = 1.0 / filterscale
    index = np.zeros((out_size, taps), np.int64)
    weight = np.zeros((out_size, taps), np.int32)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # int() truncates, as C's cast
        count = min(int(center + support + 0.5), in_size) - xmin
        k = [_bicubic((x + xmin - center + 0.5) * inv_filterscale) for x in range(count)]
        ww = 0.0
        for w in k:  # in order, as C adds them (sum() may compensate)
            ww += w
        if ww != 0.0:
            k = [w / ww for w in k]
        index[xx, :count] = np.arange(xmin, xmin + count)
        index[xx, count:] = xmin
        weight[xx, :count] = [int(-0.5 + w * (1 << PRECISION_BITS)) if w < 0
                              else int(0.5 + w * (1 << PRECISION_BITS)) for w in k]
    return index, weight


@functools.lru_cache(maxsize=64)
def _axis_tensors(in_size: int, out_size: int, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``axis_weights`` on ``device``, copied there once per size, not once per frame."""
    index, weight = axis_weights(in_size, out_size)
    return torch.from_numpy(index).to(device), torch.from_numpy(weight).to(device)


def _resample_axis(x: torch.Tensor, dim: int, out_size: int) -> torch.Tensor:
    """One of PIL's passes over ``x`` (int32 ``[C, H, W]``) along ``dim`` (1 or 2)."""
    index_t, weight_t = _axis_tensors(x.shape[dim], out_size, x.device)
    shape = [1, 1, 1]
    shape[dim] = out_size
    acc = None
    for t in range(index_t.shape[1]):
        term = x.index_select(dim, index_t[:, t]) * weight_t[:, t].view(shape)
        acc = term if acc is None else acc.add_(term)
    acc.add_(_HALF)
    return acc.bitwise_right_shift_(PRECISION_BITS).clamp_(0, 255)


def pillow_order(height: int, width: int, size: int) -> Order:
    """The pass recent Pillow runs first for ``[height, width] -> [size, size]`` (older
    releases: always ``"hv"``; ``pass_order`` finds out which one is installed)."""
    vertical_first = (height - size) > 0 and (height - size) > (width - size) * 2
    return "vh" if vertical_first else "hv"


def resize(frame: torch.Tensor, size: int, order: Order | None = None) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[3, size, size]`` uint8: ``Image.resize((size, size))``'s
    bytes, channels first, on ``frame``'s device.

    >>> rgb = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    >>> pil = np.asarray(Image.fromarray(rgb).resize((16, 16))).transpose(2, 0, 1)
    >>> bool((resize(torch.from_numpy(rgb), 16).numpy() == pil).all())
    True
    """
    height, width = frame.shape[:2]
    x = frame.permute(2, 0, 1).to(torch.int32)
    passes = {"h": (2, width), "v": (1, height)}
    for axis in order or pillow_order(height, width, size):
        dim, in_size = passes[axis]
        if in_size != size:  # Pillow skips a pass that keeps its axis' size
            x = _resample_axis(x, dim, size)
    return x.to(torch.uint8)


@functools.lru_cache(maxsize=64)
def pass_order(height: int, width: int, size: int, device: str = "cpu") -> Order | None:
    """The pass order with which ``resize`` gives the installed Pillow's bytes for this
    frame size on ``device``, checked on a random frame; None if neither does (then
    the frames must be resized by PIL itself)."""
    rng = np.random.default_rng(height * 100_003 + width)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = torch.from_numpy(
        np.ascontiguousarray(np.asarray(Image.fromarray(rgb).resize((size, size)))
                             .transpose(2, 0, 1)))
    frame = torch.from_numpy(rgb).to(device)
    first = pillow_order(height, width, size)
    for order in (first, "vh" if first == "hv" else "hv"):
        if torch.equal(resize(frame, size, order).cpu(), expected):
            return order
    return None
