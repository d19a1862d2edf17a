"""How objects move: smooth paths through sparse waypoints, plus scale and spin.

A path is a list of waypoints (one every ``keyframe_every`` frames, jittered)
joined by a cubic Hermite curve, so speed and direction change smoothly at
every waypoint and any frame's pose is computed on its own from a few
numbers. Off-screen waypoints make objects enter, leave and come back; pinned
waypoints make two paths cross at a chosen frame. Poses are rounded to a
dyadic grid (see ``raster``) so pixels do not depend on libm's last bit.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from sam_batch.synthetic.raster import Look, quantize


class Pose(NamedTuple):
    """Where one object is on one frame; every field is on a dyadic grid."""

    cx: float
    cy: float
    radius: float
    cos: float
    sin: float


@dataclass(frozen=True, eq=False)
class SceneObject:
    """One object: its look, its size and spin over time, and its path."""

    obj_id: int
    look: Look
    radius: float  # base radius in pixels
    scale_wave: tuple[float, float, float]  # amplitude, period (frames), phase
    spin: tuple[float, float, float, float, float]  # angle0, per frame, wobble amp/period/phase
    times: np.ndarray  # [N] int64 waypoint frames, first 0 and last num_frames - 1
    points: np.ndarray  # [N, 2] waypoint centres (x, y)
    tangents: np.ndarray = field(init=False)  # [N, 2] velocity at the waypoints

    def __post_init__(self) -> None:
        t, p = self.times.astype(np.float64), self.points
        if len(t) == 1:
            tangents = np.zeros_like(p)
        else:
            prev = np.concatenate([[0], np.arange(len(t) - 1)])
            nxt = np.concatenate([np.arange(1, len(t)), [len(t) - 1]])
            tangents = (p[nxt] - p[prev]) / (t[nxt] - t[prev])[:, None]
        object.__setattr__(self, "tangents", tangents)

    @property
    def max_radius(self) -> float:
        """The largest radius the object ever reaches."""
        return self.radius * (1.0 + self.scale_wave[0])

    def pose(self, t: int) -> Pose:
        """The object's pose on frame ``t`` (cubic Hermite between waypoints)."""
        times, n = self.times, len(self.times)
        if n == 1:
            x, y = self.points[0]
        else:
            i = min(max(int(np.searchsorted(times, t, side="right")) - 1, 0), n - 2)
            h = float(times[i + 1] - times[i])
            s = (t - float(times[i])) / h
            s2, s3 = s * s, s * s * s  # not s**3: pow() is libm's, products are IEEE-exact
            h00, h10 = 2 * s3 - 3 * s2 + 1, (s3 - 2 * s2 + s) * h
            h01, h11 = -2 * s3 + 3 * s2, (s3 - s2) * h
            x, y = (
                h00 * self.points[i]
                + h10 * self.tangents[i]
                + h01 * self.points[i + 1]
                + h11 * self.tangents[i + 1]
            )
        amp, period, phase = self.scale_wave
        radius = self.radius * (1.0 + amp * math.sin(2 * math.pi * t / period + phase))
        a0, per_frame, w_amp, w_period, w_phase = self.spin
        angle = a0 + per_frame * t + w_amp * math.sin(2 * math.pi * t / w_period + w_phase)
        return Pose(
            quantize(float(x), 256),
            quantize(float(y), 256),
            quantize(radius, 256),
            quantize(math.cos(angle)),
            quantize(math.sin(angle)),
        )


def waypoint_times(rng: np.random.Generator, last: int, every: int) -> list[int]:
    """Frames ``0 .. last`` spaced ``every`` frames give or take half, at least 3."""
    times, t = [], 0
    while t < last:
        times.append(t)
        t += int(rng.integers(every // 2, every * 3 // 2 + 1))
    if len(times) > 1 and last - times[-1] < 2:
        times.pop()
    times.append(last)
    if len(times) < 3 and last >= 2:
        times.insert(1, last // 2)
    return times


def wander(
    rng: np.random.Generator,
    times: list[int],
    lo: np.ndarray,
    hi: np.ndarray,
    step: float,
    every: int,
) -> dict[int, np.ndarray]:
    """A random walk of waypoints kept inside the box ``[lo, hi]`` by reflection.

    ``step`` is the typical distance covered in ``every`` frames.
    """
    span = np.maximum(hi - lo, 1e-9)
    p = lo + rng.random(2) * (hi - lo)
    way = {times[0]: p}
    for prev, t in itertools.pairwise(times):
        length = rng.uniform(0.5, 1.5) * step * (t - prev) / every
        angle = rng.uniform(0, 2 * math.pi)
        p = p + length * np.array([math.cos(angle), math.sin(angle)])
        p = lo + span - np.abs(np.mod(p - lo, 2 * span) - span)
        way[t] = p
    return way


def off_screen(p: np.ndarray, reach: float, width: int, height: int) -> np.ndarray:
    """``p`` moved past the nearest frame edge so nothing within ``reach`` shows."""
    x, y = p
    edge = int(np.argmin([x, width - x, y, height - y]))
    out = [[-reach, y], [width + reach, y], [x, -reach], [x, height + reach]][edge]
    return np.array(out, dtype=np.float64)


def pin_crossing(
    way: dict[int, np.ndarray], t_c: int, d: int, at: np.ndarray, half: np.ndarray
) -> None:
    """Make the path run straight through ``at`` on frame ``t_c``, ``half`` either side.

    Waypoints at ``t_c - d``, ``t_c``, ``t_c + d`` replace those between, so
    the centre is exactly ``at`` on frame ``t_c`` whatever else the path does.
    """
    for t in [t for t in way if t_c - d < t < t_c + d]:
        del way[t]
    way[t_c - d], way[t_c], way[t_c + d] = at - half, at.copy(), at + half
