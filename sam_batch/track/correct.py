"""Re-track a finished video from a correction on frame ``t``, as the official predictor does.

The official interactive flow is: propagate through the video, add a prompt on
frame ``t``, propagate forward from ``t``. At the moment of the click SAM 2's
session holds, for every object, the memories of the frames before ``t`` and its
own output on ``t`` (frame ``t`` counts as tracked: a click there corrects that
output, reading the memories before it and feeding the previous mask logits to
the decoder, instead of segmenting the frame from scratch). So:

1. start from a kept state at or before ``t`` and replay to ``t`` (nothing written);
2. track frame ``t`` in one session, keeping its outputs (what SAM 2 kept);
3. add the correction there, as a conditioning frame;
4. go on from ``t`` chunk by chunk to the segment's end, writing parts and states
   to a staging area that ``dataset.corrections`` commits;
5. objects new to the video go on alone to its end (a segmented video's later
   segments never tracked them); ``done.json`` last says the staging is complete.

In step 3 the predictor is switched to ``add_all_frames_to_correct_as_cond``:
with the released configs' default (off) a click on an already tracked frame is
kept as a plain memory, which the next ``propagate_in_video`` from ``t``
overwrites by tracking that frame again, so the correction would be lost. SAM 2's
training configs turn it on ("a frame that receives a correction click becomes a
conditioning frame"); the exactness test builds the official predictor the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import torch

from sam_batch.dataset.corrections import (
    staged_done,
    staged_part,
    staged_state,
    staged_tail_part,
)
from sam_batch.dataset.writer import ChunkMasks, table_bytes
from sam_batch.errors import PromptError
from sam_batch.media.storage import Location
from sam_batch.plan.corrections import CorrectionRequest
from sam_batch.plan.prompts import Prompt, validate_prompts
from sam_batch.track.frames import FrameSource, VideoFrames
from sam_batch.track.model import ModelSpec, inference, load_model
from sam_batch.track.state import MemoryState
from sam_batch.track.tracker import ChunkTracker, RandomAccessImages


def apply_correction(tracker: ChunkTracker, state: MemoryState, frames: FrameSource,
                     prompts: Sequence[Prompt]) -> MemoryState:
    """The state at ``t`` (``state.next_frame``) with the correction prompts on ``t`` added
    the way ``add_new_points_or_box`` / ``add_new_mask`` add them after a propagation."""
    t = state.next_frame
    prompts = validate_prompts(prompts, state.num_frames, state.width, state.height)
    if {p.frame for p in prompts} != {t}:
        raise PromptError(f"a correction's prompts must all lie on frame {t}")
    for o in state.objects:
        for p in prompts:
            if p.obj_id == o.obj_id and t in o.cond:
                raise PromptError(f"object {p.obj_id} already has a prompt on frame {t}")
    predictor = tracker.predictor
    session = tracker.bridge.open(state, RandomAccessImages(frames, tracker))
    tracked = state.objects and state.start_frame is not None and state.start_frame <= t
    with inference(tracker.model):
        if tracked:  # frame t as the earlier pass tracked it, outputs kept
            for _ in predictor.propagate_in_video(session, start_frame_idx=t,
                                                  max_frame_num_to_track=0):
                pass
            tracker.bridge.upcast_new_memories(session, t)
        before = predictor.add_all_frames_to_correct_as_cond
        predictor.add_all_frames_to_correct_as_cond = True
        try:
            for p in prompts:
                tracker.add_prompt(session, p)
            predictor.propagate_in_video_preflight(session)
        finally:
            predictor.add_all_frames_to_correct_as_cond = before
    start = t if state.start_frame is None else min(state.start_frame, t)
    return tracker.bridge.snapshot(session, replace(state, start_frame=start), next_frame=t)


def correct_video(model: ModelSpec, threads: int, output_url: str, storage_options: dict,
                  input_storage_options: dict, request: CorrectionRequest) -> dict:
    """Replay, correct and re-track one video into the staging area; returns counts.

    ``done.json`` is written last: its presence says the staging area is complete.
    """
    torch.set_num_threads(max(1, threads))
    loaded = load_model(model)
    tracker = ChunkTracker(loaded)
    out = Location(output_url, storage_options)
    r = request
    state = MemoryState.from_bytes(out.read(r.start_state), expect_model=loaded.identity)
    if state.next_frame != r.start_frame:
        raise RuntimeError(f"{r.video_id}: {r.start_state} continues at frame "
                           f"{state.next_frame}, not {r.start_frame}")
    frames = VideoFrames(r.info, input_storage_options)
    if state.next_frame < r.frame:  # replay, writing nothing
        run = tracker.track(state, frames, r.frame)
        for _ in run:
            pass
        state = run.state
    state = apply_correction(tracker, state, frames, r.prompts)
    retracked = sorted(state.obj_ids)
    out.write(staged_state(r.video_id, None, r.frame, r.segment), state.to_bytes())
    for spec in r.chunks:
        state = _track_into(tracker, out, state, frames, r, spec.chunk_idx, spec.end,
                            staged_part(r.video_id, spec.chunk_idx))
        out.write(staged_state(r.video_id, spec.chunk_idx, segment=r.segment), state.to_bytes())
    tail = sorted(set(r.tail_ids) & set(state.obj_ids)) if r.tail else []
    if tail:  # objects new to the video, on alone past the segment (objects are independent)
        state = state.without(set(state.obj_ids) - set(tail))
        for start, end in r.tail:
            state = _track_into(tracker, out, state, frames, r, r.chunks[-1].chunk_idx, end,
                                staged_tail_part(r.video_id, start))
    out.write(staged_done(r.video_id), json.dumps({"retracked": retracked,
                                                   "tail": tail}).encode())
    return {"video_id": r.video_id, "objects": len(retracked)}


def _track_into(tracker: ChunkTracker, out: Location, state: MemoryState, frames: FrameSource,
                r: CorrectionRequest, chunk_idx: int, end: int, path: str) -> MemoryState:
    """Track to ``end`` and stage the rows at ``path`` (the commit assigns their chunk)."""
    rows = ChunkMasks(r.video_id, chunk_idx)
    run = tracker.track(state, frames, end)
    for o in run:
        rows.add(o.frame_idx, r.info.time_s(o.frame_idx), o.obj_ids, o.masks, o.scores)
    out.write(path, table_bytes(rows.to_table()))
    return run.state
