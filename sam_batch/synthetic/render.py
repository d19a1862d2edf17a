"""Turn a :class:`Scene` into frames and exact visible-mask ground truth.

Objects are painted back to front into the image and, in the same pass, into
a label map (``0`` background, ``k`` object ``k``). The label map is the
ground truth: a pixel belongs to the object painted last there, so the masks
of one frame never overlap, an occluded part belongs to the occluder, and an
object that is hidden or off-screen has an empty mask. Frames render one at a
time (:func:`iter_frames`), so hour-long videos stream in constant memory;
:func:`generate` collects a short clip into arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from sam_batch.synthetic.raster import draw_object
from sam_batch.synthetic.scene import Scene, SceneConfig, make_scene


class Frame(NamedTuple):
    """One rendered frame: ``image [H, W, 3] uint8`` and ``labels [H, W] uint8``."""

    index: int
    image: np.ndarray
    labels: np.ndarray


def render_frame(scene: Scene, t: int) -> Frame:
    """Render frame ``t`` of ``scene`` alone (any order gives the same bytes).

    >>> scene = make_scene(SceneConfig(seed=0, width=64, height=48, num_frames=8))
    >>> f = render_frame(scene, 5)
    >>> f.image.shape, f.labels.shape, bool((render_frame(scene, 5).image == f.image).all())
    ((48, 64, 3), (48, 64), True)
    """
    c = scene.config
    if not 0 <= t < c.num_frames:
        raise IndexError(f"frame {t} is outside 0..{c.num_frames - 1}")
    oy, ox = scene.camera(t)
    image = scene.background[oy : oy + c.height, ox : ox + c.width].copy()
    labels = np.zeros((c.height, c.width), dtype=np.uint8)
    by_id = {o.obj_id: o for o in scene.objects}
    for obj_id in scene.z_order:
        pose = by_id[obj_id].pose(t)
        drawn = draw_object(by_id[obj_id].look, *pose, c.height, c.width)
        if drawn is None:
            continue
        y0, x0, inside, colors = drawn
        h, w = inside.shape
        image[y0 : y0 + h, x0 : x0 + w][inside] = colors
        labels[y0 : y0 + h, x0 : x0 + w][inside] = obj_id
    if c.noise:
        gy, gx = scene.grain_offset(t)
        noisy = image.astype(np.int16)
        noisy += scene.grain[gy : gy + c.height, gx : gx + c.width]
        image = np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)
    return Frame(t, image, labels)


def iter_frames(scene: Scene, start: int = 0, stop: int | None = None) -> Iterator[Frame]:
    """Frames ``[start, stop)`` one by one, never holding more than one.

    >>> scene = make_scene(SceneConfig(seed=0, width=32, height=32, num_frames=6))
    >>> [f.index for f in iter_frames(scene, 2)]
    [2, 3, 4, 5]
    """
    stop = scene.config.num_frames if stop is None else min(stop, scene.config.num_frames)
    for t in range(start, stop):
        yield render_frame(scene, t)


@dataclass(frozen=True, eq=False)
class Clip:
    """A rendered synthetic video held in memory, with its ground truth.

    ``frames`` is ``[T, H, W, 3] uint8``; ``masks[k]`` is object ``k``'s
    visible mask ``[T, H, W] bool`` (ids ``1..K``). ``scene`` keeps the
    parameters that made it, so ``clip.scene.config`` reproduces it.
    """

    frames: np.ndarray
    masks: dict[int, np.ndarray]
    scene: Scene

    @property
    def config(self) -> SceneConfig:
        return self.scene.config

    @property
    def fps(self) -> float:
        return self.scene.config.fps

    @property
    def seed(self) -> int:
        return self.scene.config.seed

    @property
    def obj_ids(self) -> list[int]:
        return sorted(self.masks)

    def __len__(self) -> int:
        return len(self.frames)

    def labels(self, t: int) -> np.ndarray:
        """Frame ``t``'s ``[H, W] uint8`` label map (0 background, else object id)."""
        out = np.zeros(self.frames.shape[1:3], dtype=np.uint8)
        for obj_id, mask in self.masks.items():
            out[mask[t]] = obj_id
        return out


def render(scene: Scene) -> Clip:
    """Render every frame of ``scene`` into a :class:`Clip`."""
    c = scene.config
    frames = np.empty((c.num_frames, c.height, c.width, 3), dtype=np.uint8)
    labels = np.empty((c.num_frames, c.height, c.width), dtype=np.uint8)
    for f in iter_frames(scene):
        frames[f.index], labels[f.index] = f.image, f.labels
    masks = {o.obj_id: labels == o.obj_id for o in scene.objects}
    return Clip(frames, masks, scene)


def generate(
    seed: int,
    *,
    width: int = 256,
    height: int = 256,
    num_frames: int = 64,
    num_objects: int = 3,
    fps: float = 24.0,
    enter_leave: bool = True,
    lookalike_crossing: bool = False,
    camera_motion: bool = True,
    noise: int = 3,
    background: str | None = None,
    shapes: tuple[str, ...] | None = None,
    textures: tuple[str, ...] | None = None,
    size_range: tuple[float, float] = (0.08, 0.18),
    keyframe_every: int = 16,
) -> Clip:
    """Render a synthetic clip with exact per-object visible masks.

    The parameters are those of :class:`SceneConfig`; ``shapes``/``textures``
    None means all of them. Same arguments, byte-identical result.

    >>> clip = generate(7, width=64, height=48, num_frames=4, num_objects=2)
    >>> clip.frames.shape, clip.obj_ids, clip.fps
    ((4, 48, 64, 3), [1, 2], 24.0)
    """
    config = SceneConfig(
        seed=seed,
        width=width,
        height=height,
        num_frames=num_frames,
        fps=fps,
        num_objects=num_objects,
        enter_leave=enter_leave,
        lookalike_crossing=lookalike_crossing,
        camera_motion=camera_motion,
        noise=noise,
        background=background,
        size_range=size_range,
        keyframe_every=keyframe_every,
        **({"shapes": tuple(shapes)} if shapes is not None else {}),
        **({"textures": tuple(textures)} if textures is not None else {}),
    )
    return render(make_scene(config))
