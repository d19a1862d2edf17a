"""PIL's bicubic resize as integer tensor ops: the same bytes as Pillow, every shape.

The device path of frame preparation (``track/preprocess.py``) rests on this: a
byte off anywhere flips mask pixels at random weights. Random content makes
every output pixel a different sum, so a wrong weight, bound or pass order shows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sam_batch.track.frames import prepare_frame
from sam_batch.track.preprocess import FramePreparer, normalise
from sam_batch.track.resample import axis_weights, pass_order, pillow_order, resize

SHAPES = [
    (48, 64, 32),  # both axes shrink
    (48, 64, 256),  # both grow
    (241, 317, 256),  # odd sizes
    (7, 9, 256),  # a tiny frame, grown 30x
    (300, 200, 256),  # portrait
    (600, 90, 64),  # height shrinks far more than width: Pillow runs the vertical pass first
    (256, 300, 256),  # one axis keeps its size: that pass is skipped
    (256, 256, 256),  # nothing to do
    (1080, 1920, 256),  # 1080p, as the tracker sees it at image size 256
]


def pillow(rgb: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((size, size))).transpose(2, 0, 1)


@pytest.mark.parametrize(("height", "width", "size"), SHAPES,
                         ids=[f"{h}x{w}-{s}" for h, w, s in SHAPES])
def test_resize_gives_pillows_bytes(height, width, size):
    rng = np.random.default_rng(height + width)
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    edges = np.stack([(xx * 7) % 256, (yy * 13) % 256, np.where(xx > width // 2, 255, 0)],
                     -1).astype(np.uint8)  # hard edges: over- and undershoot, clipped
    for rgb in (noise, edges):
        got = resize(torch.from_numpy(rgb), size)
        assert got.dtype == torch.uint8 and got.shape == (3, size, size)
        np.testing.assert_array_equal(got.numpy(), pillow(rgb, size))


def test_the_pass_order_matters_and_is_checked_against_pillow():
    """Both orders give different bytes where the vertical pass goes first, so the
    check against the installed Pillow can tell them apart."""
    height, width, size = 600, 90, 64
    assert pillow_order(height, width, size) == "vh"
    assert pass_order(height, width, size) == "vh"
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    frame = torch.from_numpy(rgb)
    assert not torch.equal(resize(frame, size, "hv"), resize(frame, size, "vh"))


def test_weights_sum_to_one_in_fixed_point_and_stay_in_range():
    for in_size, out_size in [(1920, 1024), (720, 1024), (7, 256), (4320, 1024)]:
        index, weight = axis_weights(in_size, out_size)
        assert index.min() >= 0 and index.max() < in_size
        # Rounding each weight may leave the sum a few units off 2**22, no more.
        assert np.abs(weight.sum(1).astype(np.int64) - (1 << 22)).max() <= index.shape[1]
        # The int32 sums cannot overflow: 255 times the weights' absolute sum.
        assert 255 * np.abs(weight.astype(np.int64)).sum(1).max() < 2**31 - 2**21


@pytest.mark.parametrize("where", ["host", "device"])
def test_both_places_prepare_sam2s_numbers(where):
    rgb = np.random.default_rng(3).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    preparer = FramePreparer(64, torch.device("cpu"), where)
    host = preparer.host(rgb)
    assert host.dtype == (torch.uint8 if where == "device" else torch.float32)
    got = preparer.device(host)
    assert got.dtype == torch.float32
    assert torch.equal(got, prepare_frame(rgb, 64))
    assert torch.equal(preparer(rgb), got)


def test_normalise_reads_every_byte_value_from_the_table():
    resized = torch.from_numpy(pillow(
        np.random.default_rng(4).integers(0, 256, (40, 40, 3), dtype=np.uint8), 32).copy())
    expected = prepare_frame(np.ascontiguousarray(resized.permute(1, 2, 0).numpy()), 32)
    assert torch.equal(normalise(resized), expected)


def test_auto_prepares_on_the_host_for_a_cpu_device_and_refuses_a_bad_place():
    assert not FramePreparer(64, torch.device("cpu")).resizes_on_device
    assert FramePreparer(64, torch.device("cpu"), "device").resizes_on_device
    with pytest.raises(ValueError, match="prepared on one of"):
        FramePreparer(64, torch.device("cpu"), "gpu")
