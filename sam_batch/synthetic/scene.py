"""A synthetic scene: its parameters, its objects and where they are on each frame.

A :class:`Scene` holds no frames. It is the seed's drawn appearance of every
object plus sparse trajectory waypoints (``motion``) and one background
canvas, so an hour-long video is a scene of a few megabytes and any frame can
be rendered on its own, in any order.

Random numbers come from independent streams keyed by ``(seed, purpose, ...)``,
so the background does not change when you ask for more objects, and frame
``t``'s sensor noise does not depend on which frames were rendered before it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from sam_batch.errors import ConfigError
from sam_batch.synthetic.motion import (
    SceneObject,
    off_screen,
    pin_crossing,
    wander,
    waypoint_times,
)
from sam_batch.synthetic.raster import (
    BACKGROUNDS,
    SHAPES,
    SPECKLE_CELLS,
    TEXTURES,
    Color,
    Look,
    draw_background,
    hsv_color,
    quantize,
)

# Stream keys of numpy.random.default_rng([seed, key, ...]).
_LOOKS, _BACKGROUND, _NOISE, _MOTION, _PLAN = 1, 2, 3, 4, 5
NOISE_PAD = 64


@dataclass(frozen=True)
class SceneConfig:
    """Everything that decides a synthetic video; the same config, the same bytes.

    Sizes are in pixels, times in frames. ``size_range`` is the object radius
    as a fraction of the shorter frame side. ``background`` None draws one of
    :data:`BACKGROUNDS` from the seed. ``enter_leave`` makes one object enter
    after frame 0 and one leave before the last frame (and, in long videos,
    objects step off-screen and come back). ``lookalike_crossing`` gives two
    objects the same shape, size, colour and texture and makes their paths
    cross mid-video. ``noise`` is the amplitude of per-frame sensor noise in
    grey levels; ``camera_motion`` pans the background.

    >>> SceneConfig(seed=3, width=64, height=48).num_objects
    3
    """

    seed: int
    width: int = 256
    height: int = 256
    num_frames: int = 64
    fps: float = 24.0
    num_objects: int = 3
    shapes: tuple[str, ...] = SHAPES
    textures: tuple[str, ...] = TEXTURES
    background: str | None = None
    enter_leave: bool = True
    lookalike_crossing: bool = False
    camera_motion: bool = True
    noise: int = 3
    size_range: tuple[float, float] = (0.08, 0.18)
    keyframe_every: int = 16

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"SceneConfig.{name}={getattr(self, name)!r}: {why}")

        if not (16 <= self.width <= 8192 and 16 <= self.height <= 8192):
            raise bad("width", f"width and height must be 16..8192 (height={self.height})")
        if self.num_frames < 1:
            raise bad("num_frames", "need at least one frame")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise bad("fps", "must be a positive number")
        if not 1 <= self.num_objects <= 255:
            raise bad("num_objects", "must be 1..255 (ids are uint8 palette indices)")
        if not self.shapes or set(self.shapes) - set(SHAPES):
            raise bad("shapes", f"choose a non-empty subset of {SHAPES}")
        if not self.textures or set(self.textures) - set(TEXTURES):
            raise bad("textures", f"choose a non-empty subset of {TEXTURES}")
        if self.background is not None and self.background not in BACKGROUNDS:
            raise bad("background", f"choose one of {BACKGROUNDS} or None")
        if self.lookalike_crossing and (self.num_objects < 2 or self.num_frames < 8):
            raise bad("lookalike_crossing", "needs num_objects >= 2 and num_frames >= 8")
        if not 0 <= self.noise <= 64:
            raise bad("noise", "must be 0..64 grey levels")
        lo, hi = self.size_range
        if not 0 < lo <= hi <= 0.5:
            raise bad("size_range", "need 0 < low <= high <= 0.5")
        if self.keyframe_every < 2:
            raise bad("keyframe_every", "must be at least 2 frames")

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-ready dict (record it next to the video)."""
        fields = dataclasses.asdict(self).items()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in fields}

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> SceneConfig:
        """The config back from :meth:`to_dict` (or its JSON).

        >>> import json
        >>> c = SceneConfig(seed=4, width=64, shapes=("disc", "star"))
        >>> SceneConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
        True
        """
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})


@dataclass(frozen=True, eq=False)
class Scene:
    """A whole synthetic video, as parameters; render it with ``render_frame``.

    ``z_order`` lists object ids back to front. ``crossing`` is
    ``(frame, obj_a, obj_b)`` where the look-alike pair's centres coincide,
    else None. ``margin`` is how far the camera can pan. ``distractors`` are
    the colours the background may borrow (the objects' own, fixed here so
    removing an object does not repaint the background).
    """

    config: SceneConfig
    objects: tuple[SceneObject, ...]
    z_order: tuple[int, ...]
    background_kind: str
    crossing: tuple[int, int, int] | None
    margin: int
    distractors: tuple[Color, ...]

    @cached_property
    def background(self) -> np.ndarray:
        """The ``[H + 2m, W + 2m, 3]`` canvas the camera pans over (drawn once)."""
        c = self.config
        return draw_background(
            np.random.default_rng([c.seed, _BACKGROUND]),
            self.background_kind,
            c.height + 2 * self.margin,
            c.width + 2 * self.margin,
            list(self.distractors),
        )

    def camera(self, t: int) -> tuple[int, int]:
        """Top-left ``(y, x)`` of the view on frame ``t``: an integer back-and-forth pan."""
        if self.margin == 0:
            return 0, 0
        span = 2 * self.margin * 16  # 1/16-pixel steps of a triangle wave

        def bounce(speed: int) -> int:
            pos = (t * speed) % (2 * span)
            return (pos if pos <= span else 2 * span - pos) // 16

        return bounce(5), bounce(7)

    @cached_property
    def grain(self) -> np.ndarray:
        """An ``int16`` sensor-noise canvas, ``NOISE_PAD`` larger than the frame."""
        c = self.config
        return np.random.default_rng([c.seed, _NOISE]).integers(
            -c.noise, c.noise + 1, (c.height + NOISE_PAD, c.width + NOISE_PAD, 3), np.int16
        )

    def grain_offset(self, t: int) -> tuple[int, int]:
        """Where frame ``t`` cuts its noise from :attr:`grain`, drawn from ``t``'s own stream.

        Drawing a fresh noise image per frame costs more than drawing all the
        rest; a random cut of one canvas (``NOISE_PAD**2`` patterns) does not.
        """
        dy, dx = np.random.default_rng([self.config.seed, _NOISE, t]).integers(0, NOISE_PAD, 2)
        return int(dy), int(dx)

    def without(self, *obj_ids: int) -> Scene:
        """The same scene with some objects removed (what is behind them shows)."""
        return dataclasses.replace(
            self,
            objects=tuple(o for o in self.objects if o.obj_id not in obj_ids),
            z_order=tuple(k for k in self.z_order if k not in obj_ids),
        )


def _looks(rng: np.random.Generator, c: SceneConfig) -> list[Look]:
    """Distinct colours (hues spread around the wheel), random shapes and textures."""
    hue0, looks = rng.random(), []
    for k in range(c.num_objects):
        hue = hue0 + (k + rng.uniform(-0.3, 0.3)) / c.num_objects
        sat, val = rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0)
        second = hsv_color(
            hue + rng.uniform(-0.08, 0.08), sat * rng.uniform(0.3, 0.9), val * rng.uniform(0.3, 0.6)
        )
        angle = rng.uniform(0.0, 2 * math.pi)
        looks.append(
            Look(
                shape=c.shapes[int(rng.integers(len(c.shapes)))],
                aspect=quantize(rng.uniform(0.5, 0.8)),
                texture=c.textures[int(rng.integers(len(c.textures)))],
                color_a=hsv_color(hue, sat, val),
                color_b=second,
                frequency=quantize(rng.uniform(1.5, 3.5)),
                direction=(quantize(math.cos(angle)), quantize(math.sin(angle))),
                weights=rng.integers(0, 256, SPECKLE_CELLS**2, dtype=np.uint8).tobytes(),
            )
        )
    return looks


def make_scene(config: SceneConfig) -> Scene:
    """Draw a scene from its config: looks, sizes, spins, paths, z-order.

    >>> scene = make_scene(SceneConfig(seed=1, width=64, height=64, num_frames=10))
    >>> len(scene.objects), scene.objects[0].pose(0).radius > 0
    (3, True)
    """
    c = config
    looks = _looks(np.random.default_rng([c.seed, _LOOKS]), c)
    plan = np.random.default_rng([c.seed, _PLAN])  # one stream: the draws' order is the scene
    cast = _cast(plan, c, looks)
    crossing = _crossing(plan, c)
    objects = tuple(_object(k, c, looks[k - 1], cast, crossing)
                    for k in range(1, c.num_objects + 1))
    margin = round(0.08 * min(c.width, c.height)) if c.camera_motion else 0
    crossed = (crossing.frame, *cast.pair) if cast.pair else None
    return Scene(c, objects, cast.z_order, cast.background, crossed, margin,
                 tuple(look.color_a for look in looks))


@dataclass(frozen=True)
class _Cast:
    """Who is in front, who looks alike, who enters and who leaves (0: nobody)."""

    z_order: tuple[int, ...]
    background: str
    pair: tuple[int, ...]
    enter: int
    leave: int


def _cast(plan: np.random.Generator, c: SceneConfig, looks: list[Look]) -> _Cast:
    """The roles, drawn from the plan stream; the second look-alike takes the first's look."""
    z_order = tuple(int(k) + 1 for k in plan.permutation(c.num_objects))
    bg_kind = c.background or BACKGROUNDS[int(plan.integers(len(BACKGROUNDS)))]
    pair: tuple[int, ...] = ()
    if c.lookalike_crossing:
        pair = tuple(int(k) + 1 for k in plan.choice(c.num_objects, 2, replace=False))
        looks[pair[1] - 1] = looks[pair[0] - 1]
    # Who enters and who leaves: not the look-alikes, unless there is no one else.
    others = [k for k in range(1, c.num_objects + 1) if k not in pair] or list(pair)
    enter = others[int(plan.integers(len(others)))]
    leavers = [k for k in others if k != enter] or others
    leave = leavers[int(plan.integers(len(leavers)))]
    if not c.enter_leave or c.num_frames - 1 < 2:
        enter = leave = 0
    return _Cast(z_order, bg_kind, pair, enter, leave)


@dataclass(frozen=True)
class _Crossing:
    """The look-alikes' shared size and breathing, and where and how they cross."""

    radius: float
    wave: tuple[float, float, float]
    frame: int
    spread: int  # frames before and after ``frame`` the crossing is pinned over
    at: np.ndarray
    heading: float
    turn: float
    half: float


def _crossing(plan: np.random.Generator, c: SceneConfig) -> _Crossing:
    """Drawn even without look-alikes, so the plan stream stays the same either way."""
    short, last = min(c.width, c.height), c.num_frames - 1
    radius = quantize(plan.uniform(*c.size_range) * short, 256)
    wave = (plan.uniform(0.05, 0.2), plan.uniform(40, 160), plan.uniform(0, 2 * math.pi))
    t_c = last // 2
    d = min(c.keyframe_every, t_c - 1, last - t_c - 1)
    at = np.array([c.width, c.height]) / 2 + plan.uniform(-0.15, 0.15, 2) * short
    heading = plan.uniform(0, 2 * math.pi)
    turn = plan.uniform(math.pi / 3, 2 * math.pi / 3) * (1 if plan.random() < 0.5 else -1)
    half = plan.uniform(0.2, 0.3) * short
    return _Crossing(radius, wave, t_c, d, at, heading, turn, half)


def _object(k: int, c: SceneConfig, look: Look, cast: _Cast, crossing: _Crossing) -> SceneObject:
    """Object ``k``'s size, breathing, spin and path, from its own motion stream."""
    short, last = min(c.width, c.height), c.num_frames - 1
    rng = np.random.default_rng([c.seed, _MOTION, k])
    radius = quantize(rng.uniform(*c.size_range) * short, 256)
    wave = (rng.uniform(0.05, 0.2), rng.uniform(40, 160), rng.uniform(0, 2 * math.pi))
    if k in cast.pair:
        radius, wave = crossing.radius, crossing.wave
    spin = (
        rng.uniform(0, 2 * math.pi),
        rng.uniform(-0.02, 0.02),
        rng.uniform(0.0, 0.3),
        rng.uniform(30, 90),
        rng.uniform(0, 2 * math.pi),
    )
    reach = radius * (1 + wave[0]) + 2.0  # past the edge by this much shows nothing
    lo = np.array([radius, radius])
    hi = np.maximum(np.array([c.width - radius, c.height - radius]), lo)
    times = waypoint_times(rng, last, c.keyframe_every)
    way = wander(rng, times, lo, hi, 0.2 * short, c.keyframe_every)
    if c.enter_leave and k not in cast.pair and len(times) > 8:  # long videos: away and back
        for t in times[1:-1]:
            if rng.random() < 0.08:
                way[t] = off_screen(way[t], reach, c.width, c.height)
    if k in cast.pair:
        angle = crossing.heading + (crossing.turn if k == cast.pair[1] else 0.0)
        pin_crossing(way, crossing.frame, crossing.spread, crossing.at,
                     crossing.half * np.array([math.cos(angle), math.sin(angle)]))
    order = sorted(way)
    if k == cast.enter:
        way[order[0]] = off_screen(way[order[1]], reach, c.width, c.height)
    if k == cast.leave:
        way[order[-1]] = off_screen(way[order[-2]], reach, c.width, c.height)
    return SceneObject(
        obj_id=k,
        look=look,
        radius=radius,
        scale_wave=wave,
        spin=spin,
        times=np.array(order, dtype=np.int64),
        points=np.array([way[t] for t in order], dtype=np.float64),
    )


def step_away(scene: Scene, away: dict[int, list[int]], frames: int = 2) -> Scene:
    """``scene`` with object ``k`` off-screen on (at least) frames ``t - frames .. t +
    frames`` of each ``t`` in ``away[k]``: it leaves over the 6 frames before and comes
    back over the 6 after, on its own path otherwise (objects hidden on a given frame).

    >>> scene = make_scene(SceneConfig(seed=1, width=64, height=48, num_frames=40,
    ...                                enter_leave=False))
    >>> from sam_batch.synthetic.render import render
    >>> masks = render(step_away(scene, {1: [20]})).masks[1]
    >>> [t for t in range(40) if not masks[t].any()]
    [17, 18, 19, 20, 21, 22]
    """
    last = scene.config.num_frames - 1
    moved = []
    for o in scene.objects:
        way = {int(t): p for t, p in zip(o.times, o.points, strict=True)}
        for t in away.get(o.obj_id, []):
            pad = frames + 6
            keep = {u: np.array([o.pose(u).cx, o.pose(u).cy])
                    for u in (max(t - pad, 0), min(t + pad, last))}
            way = {u: p for u, p in way.items() if not t - pad <= u <= t + pad} | keep
            gone = off_screen(np.array([o.pose(t).cx, o.pose(t).cy]), o.max_radius + 2,
                              scene.config.width, scene.config.height)
            way |= {u: gone for u in range(t - frames, t + frames + 1) if 0 <= u <= last}
        times = sorted(way)
        moved.append(SceneObject(o.obj_id, o.look, o.radius, o.scale_wave, o.spin,
                                 np.array(times, np.int64), np.array([way[u] for u in times])))
    return dataclasses.replace(scene, objects=tuple(moved))
