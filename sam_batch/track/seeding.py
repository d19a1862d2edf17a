"""Seed a parallel segment with the sparse pass's memory, under global frame indices.

The sparse pass tracks every k-th frame of a video as if those samples were
consecutive frames ``0 .. n-1`` (``frames.SparseFrames``), at SAM 2's own
stride 1: for sample ``i`` it reads the spatial memories of samples ``i-1 ..
i-6`` and the object pointers of samples ``i-1 .. i-15``, and every prompt. Its
state before sample ``L`` (the first sample at or after a segment start ``s``)
is exactly what a seeded segment needs at ``s``, once its frame keys say what
SAM 2 should read from frame ``s`` on (sam2_base.py
``_prepare_memory_conditioned_features``):

- Conditioning frames (the user's prompts, past and future) go back to their
  global frames. Their memories do not depend on any other frame (a first
  prompt of an object is encoded without memory), so they equal the single
  pass's, and pointer distances to them are the true ones.
- The recent samples' memories become the frames just before ``s``: sample
  ``L - j`` is keyed ``s - j``. At stride 1 SAM 2 reads the spatial memories of
  ``t-1 .. t-6`` and the pointers of ``t-1 .. t-15``, so frame ``s`` sees the
  same six memories and fifteen pointers, at the same distances, as the sparse
  pass's next sample would; each tracked frame of the segment then pushes one
  sample out of the windows, and six frames (fifteen for pointers) after ``s``
  the segment reads only its own frames, like the single pass.

Keying the samples at their true frames instead (every k-th) would leave at
most one of them inside stride 1's windows; reading them there needs
``memory_temporal_stride_for_eval = k``, which changes what every later frame
of the segment reads (the single pass reads stride 1) and still drops the
pointers more than 15 frames back. No predicted mask becomes a conditioning
frame, and every object keeps its memory and id, even one whose mask is empty
at ``s``: SAM 2 finds it again when it shows.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import replace

from sam_batch.track.state import MemoryState, ObjectMemory


def seed_state(sparse: MemoryState, indices: Sequence[int], start: int,
               num_frames: int) -> MemoryState:
    """The sparse pass's ``sparse`` state as the memory of a segment starting at ``start``.

    ``indices``: the global frame of each sample; ``sparse.next_frame`` must be
    the number of samples before ``start``. ``num_frames``: the video's length.

    >>> import torch
    >>> from sam_batch.plan.model_spec import ModelIdentity
    >>> from sam_batch.track.state import FrameMemory
    >>> m = FrameMemory(None, torch.zeros(1, 4))
    >>> obj = ObjectMemory(1, cond={0: m, 4: m}, non_cond={1: m, 2: m, 3: m})
    >>> s = MemoryState(ModelIdentity("m", 64, "random:seed=0", "1.1.0", "float32", False),
    ...                 6, 8, 8, next_frame=4,
    ...                 start_frame=0, objects=(obj,), maskmem_pos_enc=None)
    >>> seeded = seed_state(s, [0, 8, 16, 24, 30, 32], start=25, num_frames=40)
    >>> o = seeded.objects[0]
    >>> sorted(o.cond), sorted(o.non_cond), seeded.next_frame, seeded.start_frame
    ([0, 30], [22, 23, 24], 25, 0)
    """
    before = bisect.bisect_left(indices, start)
    if sparse.next_frame != before:
        raise ValueError(
            f"a segment starting at frame {start} needs the sparse state after its "
            f"{before} samples before that frame, got one at sample {sparse.next_frame}"
        )
    objects = tuple(
        ObjectMemory(
            obj_id=o.obj_id,
            cond={indices[f]: m for f, m in o.cond.items()},
            non_cond={start - (before - f): m for f, m in o.non_cond.items()},
        )
        for o in sparse.objects
    )
    first = None if sparse.start_frame is None else indices[sparse.start_frame]
    return replace(sparse, num_frames=num_frames, next_frame=start, start_frame=first,
                   objects=objects, chunks_done=0)
