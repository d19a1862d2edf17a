"""Shapes, textures and backgrounds drawn with exact numpy arithmetic.

The same seed must give byte-identical frames on any machine. Pixels therefore
never go through transcendental functions (whose last bit differs between libm
builds and SIMD paths): every ``cos``/``sin`` is taken on a scalar and rounded
to a dyadic grid (:func:`quantize`) before it touches an array, and per-pixel
work is only ``+ - * /``, ``floor`` and comparisons, which IEEE 754 makes exact
everywhere. Colours are mixed in integers.

Every shape lies inside the unit circle of its local frame, so an object of
radius ``r`` never covers a pixel farther than ``r`` from its centre: that is
what lets the scene push an object exactly off-screen.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

SHAPES = ("disc", "ellipse", "rectangle", "triangle", "pentagon", "hexagon", "star")
TEXTURES = ("flat", "stripes", "checker", "speckle")
BACKGROUNDS = ("gradient", "noise", "stripes", "blobs")

#: Side of the speckle texture's cell grid across one object diameter.
SPECKLE_CELLS = 12

Color = tuple[int, int, int]


def quantize(value: float, steps: int = 65536) -> float:
    """Round ``value`` to a multiple of ``1 / steps`` (exact in float64).

    >>> quantize(math.cos(math.pi / 3))
    0.5
    """
    return round(value * steps) / steps


def hsv_color(h: float, s: float, v: float) -> Color:
    """An RGB uint8 triple from HSV in ``[0, 1]`` (pure Python, so exact).

    >>> hsv_color(0.0, 1.0, 1.0)
    (255, 0, 0)
    """
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


@dataclass(frozen=True)
class Look:
    """What one object looks like, independent of where it is.

    Textures live in the object's local frame (unit radius), so they move,
    rotate and scale with it like a printed pattern, not like a window.
    ``weights`` of the speckle texture is a ``SPECKLE_CELLS**2`` byte grid.
    Every pixel's colour is ``palette[weight]``, a blend of the two colours.
    """

    shape: str
    aspect: float  # minor / major axis of ellipse and rectangle
    texture: str
    color_a: Color
    color_b: Color
    frequency: float  # stripes or checker cells per unit radius
    direction: tuple[float, float]  # quantised (cos, sin) of the stripe normal
    weights: bytes = b""

    @cached_property
    def palette(self) -> np.ndarray:
        """``[256, 3]`` uint8: the colour at each texture weight 0..255."""
        return mix(self.color_a, self.color_b, np.arange(256))


def polygon(shape: str, aspect: float) -> np.ndarray | None:
    """Vertices ``[N, 2]`` of a polygonal shape in its unit circle, else None.

    >>> polygon("triangle", 1.0).shape
    (3, 2)
    >>> polygon("disc", 1.0) is None
    True
    """
    counts = {"triangle": 3, "pentagon": 5, "hexagon": 6}
    if shape in counts:
        n = counts[shape]
        angles = [-math.pi / 2 + 2 * math.pi * i / n for i in range(n)]
        pts = [(math.cos(a), math.sin(a)) for a in angles]
    elif shape == "star":
        angles = [-math.pi / 2 + math.pi * i / 5 for i in range(10)]
        radii = [1.0 if i % 2 == 0 else 0.45 for i in range(10)]
        pts = [(r * math.cos(a), r * math.sin(a)) for r, a in zip(radii, angles, strict=True)]
    elif shape == "rectangle":
        half_w = 1.0 / math.sqrt(1.0 + aspect * aspect)  # half-diagonal == 1
        half_h = aspect * half_w
        pts = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    else:
        return None
    # Rounding toward zero keeps every vertex inside the unit circle.
    return np.array([[math.trunc(c * 65536) / 65536 for c in p] for p in pts], dtype=np.float64)


def _inside(shape: str, aspect: float, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which local points ``(u, v)`` the shape covers (even-odd rule for polygons)."""
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "ellipse":
        w = v * (1.0 / aspect)
        return u * u + w * w <= 1.0
    verts = polygon(shape, aspect)
    if verts is None:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
    inside = np.zeros(u.shape, dtype=bool)
    for (xa, ya), (xb, yb) in zip(verts, np.roll(verts, -1, axis=0), strict=True):
        if ya == yb:
            continue
        crosses = (ya > v) != (yb > v)
        x_cross = xa + (v - ya) * ((xb - xa) / (yb - ya))
        inside ^= crosses & (u < x_cross)
    return inside


def _texture(look: Look, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mixing weight 0..255 between ``color_a`` and ``color_b`` at local points."""
    if look.texture == "flat":
        return np.zeros(u.shape, dtype=np.int32)
    if look.texture == "stripes":
        dc, ds = look.direction
        band = np.floor((u * dc + v * ds) * look.frequency).astype(np.int64)
        return ((band & 1) * 255).astype(np.int32)
    if look.texture == "checker":
        f = look.frequency
        cells = np.floor(u * f).astype(np.int64) + np.floor(v * f).astype(np.int64)
        return ((cells & 1) * 255).astype(np.int32)
    if look.texture == "speckle":
        n = SPECKLE_CELLS
        grid = np.frombuffer(look.weights, dtype=np.uint8).reshape(n, n).astype(np.int32)
        ix = np.clip(np.floor((u + 1.0) * (n / 2)).astype(np.int64), 0, n - 1)
        iy = np.clip(np.floor((v + 1.0) * (n / 2)).astype(np.int64), 0, n - 1)
        return grid[iy, ix]
    raise ValueError(f"unknown texture {look.texture!r}; choose from {TEXTURES}")


def mix(color_a: Color, color_b: Color, weight: np.ndarray) -> np.ndarray:
    """Blend two colours by integer weights 0..255 into ``[..., 3]`` uint8.

    >>> mix((0, 0, 0), (255, 255, 255), np.array([0, 255])).tolist()
    [[0, 0, 0], [255, 255, 255]]
    """
    a = np.asarray(color_a, dtype=np.int32)
    b = np.asarray(color_b, dtype=np.int32)
    w = weight.astype(np.int32)[..., None]
    return ((a * (255 - w) + b * w + 127) // 255).astype(np.uint8)


def draw_object(
    look: Look,
    cx: float,
    cy: float,
    radius: float,
    cos_a: float,
    sin_a: float,
    height: int,
    width: int,
) -> tuple[int, int, np.ndarray, np.ndarray] | None:
    """Rasterise one object; None when it covers no pixel of the frame.

    Returns ``(y0, x0, inside, colors)``: a window at ``(y0, x0)`` of the
    frame, the pixels whose centre the shape covers (the hard mask, no
    antialiasing, so colours and ground truth agree exactly) and the textured
    colours of those pixels, ``[inside.sum(), 3]`` in row-major order.

    >>> look = Look("disc", 1.0, "flat", (255, 0, 0), (0, 0, 0), 1.0, (1.0, 0.0))
    >>> y0, x0, inside, colors = draw_object(look, 8.0, 8.0, 3.0, 1.0, 0.0, 16, 16)
    >>> int(inside.sum()), colors[0].tolist()
    (32, [255, 0, 0])
    """
    reach = radius + 1.0
    x0, x1 = max(0, math.floor(cx - reach)), min(width, math.ceil(cx + reach) + 1)
    y0, y1 = max(0, math.floor(cy - reach)), min(height, math.ceil(cy + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    dx = (np.arange(x0, x1, dtype=np.float64) + 0.5 - cx)[None, :]
    dy = (np.arange(y0, y1, dtype=np.float64) + 0.5 - cy)[:, None]
    inv = 1.0 / radius
    u = (dx * cos_a + dy * sin_a) * inv
    v = (dy * cos_a - dx * sin_a) * inv
    inside = _inside(look.shape, look.aspect, u, v)
    if not inside.any():
        return None
    if look.texture == "flat":
        colors = np.broadcast_to(look.palette[0], (int(inside.sum()), 3))
    else:
        colors = look.palette[_texture(look, u[inside], v[inside])]
    return y0, x0, inside, colors


def _unit_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates scaled so the shorter side spans ``[0, 1]``."""
    scale = 1.0 / min(height, width)
    ys = ((np.arange(height, dtype=np.float64) + 0.5) * scale)[:, None]
    xs = ((np.arange(width, dtype=np.float64) + 0.5) * scale)[None, :]
    return ys, xs


def _value_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Smooth ``[H, W, 3]`` noise in [0, 1]: a coarse random grid, bilinear."""
    gh, gw = cells + 2, max(2, round(cells * width / height)) + 2
    grid = rng.random((gh, gw, 3))
    fy = (np.arange(height, dtype=np.float64) + 0.5) * ((gh - 1) / height)
    fx = (np.arange(width, dtype=np.float64) + 0.5) * ((gw - 1) / width)
    iy, ix = np.floor(fy).astype(np.int64), np.floor(fx).astype(np.int64)
    ty, tx = (fy - iy)[:, None, None], (fx - ix)[None, :, None]
    top = grid[iy][:, ix] * (1.0 - tx) + grid[iy][:, ix + 1] * tx
    bottom = grid[iy + 1][:, ix] * (1.0 - tx) + grid[iy + 1][:, ix + 1] * tx
    return top * (1.0 - ty) + bottom * ty


def _direction(rng: np.random.Generator) -> tuple[float, float]:
    angle = rng.uniform(0.0, 2.0 * math.pi)
    return quantize(math.cos(angle)), quantize(math.sin(angle))


def draw_background(
    rng: np.random.Generator, kind: str, height: int, width: int, distractors: list[Color]
) -> np.ndarray:
    """A non-flat ``[H, W, 3]`` uint8 background of the given ``kind``.

    Every kind starts from a two-colour gradient and ends with a static grain,
    so no region is flat. ``blobs`` paints ellipses, some in ``distractors``
    (object colours), so colour alone cannot segment an object.

    >>> bg = draw_background(np.random.default_rng(0), "blobs", 24, 32, [(255, 0, 0)])
    >>> bg.shape, bg.dtype, len(np.unique(bg.reshape(-1, 3), axis=0)) > 50
    ((24, 32, 3), dtype('uint8'), True)
    """
    ys, xs = _unit_grid(height, width)
    wn, hn = width / min(height, width), height / min(height, width)

    def muted() -> np.ndarray:
        h, s, v = rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.25, 0.85)
        return np.asarray(hsv_color(h, s, v), dtype=np.float64)

    c0, c1 = muted(), muted()
    dc, ds = _direction(rng)
    lo = min(0.0, dc * wn) + min(0.0, ds * hn)
    hi = max(0.0, dc * wn) + max(0.0, ds * hn)
    t = ((xs * dc + ys * ds - lo) * (1.0 / (hi - lo)))[..., None]
    img = c0 * (1.0 - t) + c1 * t
    if kind == "gradient":
        dc2, ds2 = _direction(rng)
        wave = (xs * dc2 + ys * ds2) * rng.uniform(1.5, 3.0)
        tri = np.abs(wave - np.floor(wave) - 0.5)[..., None]  # triangle wave 0..0.5
        img = img * (1.0 - tri) + muted() * tri
    elif kind == "noise":
        noise = _value_noise(rng, height, width, int(rng.integers(3, 9)))
        img = img * 0.35 + noise * (255.0 * 0.65)
    elif kind == "stripes":
        dc2, ds2 = _direction(rng)
        period = rng.uniform(0.04, 0.15)
        band = np.floor((xs * dc2 + ys * ds2) * (1.0 / period)).astype(np.int64) & 1
        img = np.where(band[..., None] == 1, img * 0.5 + muted() * 0.5, img)
    elif kind == "blobs":
        for _ in range(int(rng.integers(12, 30))):
            cy_, cx_ = rng.uniform(0, hn), rng.uniform(0, wn)
            ra, rb = rng.uniform(0.03, 0.15), rng.uniform(0.03, 0.15)
            bc, bs = _direction(rng)
            use_distractor = distractors and rng.random() < 0.35
            color = (
                np.asarray(distractors[int(rng.integers(len(distractors)))], np.float64) * 0.8
                if use_distractor
                else muted()
            )
            ex, ey = xs - cx_, ys - cy_
            pu, pv = (ex * bc + ey * bs) * (1.0 / ra), (ey * bc - ex * bs) * (1.0 / rb)
            img = np.where((pu * pu + pv * pv <= 1.0)[..., None], color, img)
    else:
        raise ValueError(f"unknown background {kind!r}; choose from {BACKGROUNDS}")
    grain = rng.integers(-8, 9, size=(height, width, 1)).astype(np.float64)
    return np.clip(np.rint(img + grain), 0, 255).astype(np.uint8)
