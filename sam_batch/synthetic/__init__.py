"""Synthetic videos with exact per-object ground truth, for training, tests and demos.

No SAM 2 checkpoint can be downloaded everywhere, so the project trains a small
SAM 2 on these videos and measures itself against their truth. A seed decides
everything and the same seed gives byte-identical frames and masks on any
machine. Each scene has several textured objects (discs, ellipses, rectangles,
triangles, pentagons, hexagons, stars) over a textured, panning background;
they move on smooth paths, change speed, scale, rotate, occlude each other,
enter and leave, and on request two look-alikes cross paths.

Modules, one idea each: ``scene`` (parameters and motion), ``raster`` (shapes,
textures, backgrounds), ``render`` (frames and visible masks), ``writers``
(mp4, DAVIS PNGs), ``prompts`` (mask/box/click prompts from the truth),
``sample`` (the demo input).

>>> import tempfile
>>> from sam_batch.synthetic import generate, write_mp4, first_frame_prompts
>>> clip = generate(1, width=64, height=64, num_frames=8, lookalike_crossing=True)
>>> len(first_frame_prompts(clip, "box")), clip.scene.crossing is not None
(3, True)
>>> write_mp4(clip, tempfile.mkdtemp() + "/c.mp4").num_frames
8

A long video streams from a :class:`Scene` without ever being held in memory::

    scene = make_scene(SceneConfig(seed=5, width=512, height=512, num_frames=86_400))
    write_mp4(scene, "hour.mp4")
"""

from sam_batch.synthetic.prompts import (
    box_prompt,
    first_frame_prompts,
    first_visible,
    mask_prompt,
    points_prompt,
)
from sam_batch.synthetic.raster import BACKGROUNDS, SHAPES, TEXTURES
from sam_batch.synthetic.render import Clip, Frame, generate, iter_frames, render, render_frame
from sam_batch.synthetic.sample import write_sample
from sam_batch.synthetic.scene import Scene, SceneConfig, make_scene, step_away
from sam_batch.synthetic.writers import VideoFile, davis_palette, write_davis_png, write_mp4

SyntheticVideo = Clip

__all__ = [
    "BACKGROUNDS",
    "SHAPES",
    "TEXTURES",
    "Clip",
    "Frame",
    "Scene",
    "SceneConfig",
    "SyntheticVideo",
    "VideoFile",
    "box_prompt",
    "davis_palette",
    "first_frame_prompts",
    "first_visible",
    "generate",
    "iter_frames",
    "make_scene",
    "mask_prompt",
    "points_prompt",
    "render",
    "render_frame",
    "step_away",
    "write_davis_png",
    "write_mp4",
    "write_sample",
]
