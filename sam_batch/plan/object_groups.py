"""One video's objects split into groups, each tracked by a chain of its own.

SAM 2.1 tracks every object on its own (batch size 1; only the image features
are shared), so a video with 40 prompted objects is 40 independent tracks over
the same frames. ``--objects-per-worker K`` splits them into groups of at most
``K`` objects; each group runs as its own chain of chunks on any actor, and
finishing merges the groups' parts chunk by chunk. The output equals the
unsplit run's. The price: each group encodes every frame once more.

A group is planned like a segment of its own over the whole video (its index is
the group's), so a group's parts, states and resume are a segment's:
``_staging/masks/<video>/part-s<group>-c<chunk>`` until merged, and
``_states/<video>/s<group>-c<chunk>.state``.

One trap: ``propagate_in_video`` starts every object at the earliest prompt of
*any* object. A group whose own first prompt is later must still start there
(``track_from``), or its objects would miss the frames before, and every memory
after them would differ.

>>> from sam_batch.plan.prompts import Prompt
>>> ps = [Prompt(obj_id=o, frame=f, points=((1.0, 1.0),), labels=(1,))
...       for o, f in [(3, 0), (1, 0), (2, 5), (1, 9)]]
>>> [[(p.obj_id, p.frame) for p in g] for g in group_prompts(ps, 2)]
[[(1, 0), (1, 9), (2, 5)], [(3, 0)]]
>>> from sam_batch.plan.chunks import plan_video
>>> plan = plan_video("v", 10, chunk_frames=4)
>>> [(c.segment, c.chunk_idx, c.start) for c in group_segment(plan.segments[0], 1).chunks]
[(1, 0, 0), (1, 1, 4), (1, 2, 8)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sam_batch.errors import ConfigError
from sam_batch.plan.chunks import SegmentPlan
from sam_batch.plan.prompts import Prompt


def group_prompts(prompts: Sequence[Prompt], per_group: int) -> list[tuple[Prompt, ...]]:
    """The prompts split by object into groups of at most ``per_group`` objects, in
    object id order; every prompt of an object stays in its object's group."""
    ids = sorted({p.obj_id for p in prompts})
    groups = [set(ids[i:i + per_group]) for i in range(0, len(ids), max(per_group, 1))]
    ordered = sorted(prompts, key=lambda p: (p.obj_id, p.frame))
    return [tuple(p for p in ordered if p.obj_id in g) for g in groups]


def group_segment(segment: SegmentPlan, group: int) -> SegmentPlan:
    """The video's one segment as the chain of group ``group`` (chunks renumbered to it)."""
    chunks = tuple(replace(c, segment=group) for c in segment.chunks)
    return SegmentPlan(group, segment.start, segment.end, chunks)


def check_objects_per_worker(objects_per_worker: int | None, segments: int | str,
                             discover: str | None) -> None:
    """Groups split one pass over the video by objects: with segments (split by time)
    or discovery (objects born while tracking) they are refused."""
    if objects_per_worker is None:
        return
    if objects_per_worker < 1:
        raise ConfigError(f"objects_per_worker must be >= 1, got {objects_per_worker}")
    if segments != 1:
        raise ConfigError("objects_per_worker splits a video by objects and needs segments: 1 "
                          f"(got segments: {segments!r}); use one or the other")
    if discover not in (None, "off"):
        raise ConfigError("objects_per_worker cannot be combined with discover: discovered "
                          "objects are born inside one chain")
