"""What one GPU worker does: start a video, run a chunk, write its part.

Plain Python, so it is tested without Ray; ``runtime.actor`` wraps it in a Ray
actor. A chunk's work is: decode and encode frames (ahead of the state, if the
state is still on its way), track from the incoming state, encode masks as
rows, checkpoint the outgoing state, then commit the chunk's Parquet part. The
part is committed last, so a part that exists always has its state beside it
and a resumed job can continue right after it. Then the worker deletes the
state two chunks back when ``--keep-states`` does not keep it.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from dataclasses import replace

import torch

from sam_batch.dataset import rle
from sam_batch.dataset.layout import init_state_path, state_path
from sam_batch.dataset.schema import ORIGIN_DISCOVERED, ORIGIN_PROMPT
from sam_batch.dataset.writer import ChunkMasks, write_mask_part
from sam_batch.media.storage import Location
from sam_batch.plan.chunks import ChunkSpec
from sam_batch.plan.discovery import DiscoverySettings, Lifecycle
from sam_batch.plan.prompts import Prompt
from sam_batch.plan.tasks import ChunkResult, Seeds, StateSource, VideoTask
from sam_batch.plan.track_meta import TrackMeta
from sam_batch.track.discovery import Discoverer
from sam_batch.track.frames import FrameSource, SparseFrames, VideoFrames, read_one
from sam_batch.track.model import ModelIdentity, ModelSpec, load_model
from sam_batch.track.pipeline import MaskEncoder
from sam_batch.track.seeding import seed_state
from sam_batch.track.session import EncodedFrame
from sam_batch.track.state import MemoryState
from sam_batch.track.tracker import ChunkTracker


class Worker:
    """Holds one model; runs any video's chunks given their incoming states."""

    def __init__(
        self,
        model: ModelSpec,
        output_url: str,
        storage_options: dict | None = None,
        input_storage_options: dict | None = None,
        threads: int | None = None,
        encode_ahead: int = 16,
        discovery: DiscoverySettings | None = None,
    ):
        if threads:
            torch.set_num_threads(threads)
        self.model = load_model(model)
        self.tracker = ChunkTracker(self.model)
        self.output = Location(output_url, storage_options)
        self.input_storage_options = dict(input_storage_options or {})
        self.encode_ahead = encode_ahead
        self.discovery = discovery
        self._discoverer: Discoverer | None = None

    def identity(self) -> ModelIdentity:
        return self.model.identity

    def frames(self, task: VideoTask) -> FrameSource:
        frames = VideoFrames(task.info, self.input_storage_options)
        if task.frame_indices is None:
            return frames
        decoders = self.tracker.host_threads or min(4, torch.get_num_threads())
        return SparseFrames(frames, task.frame_indices, workers=decoders)

    def start_video(self, task: VideoTask) -> bytes:
        """Encode every prompt of a segment: the state before its first chunk.

        A seeded segment starts from the sparse pass's memory at its first frame
        instead (``track.seeding``), which already holds every prompt of the video.
        """
        life = Lifecycle({}, self.discovery)
        if task.seed_state is not None:
            return self._start_seeded(task, life)
        for p in task.prompts:
            life.born(p.obj_id, p.frame, ORIGIN_PROMPT)
        state = self.tracker.start(
            self.frames(task), task.prompts,
            meta=TrackMeta(task.video_id, task.segment, task.fingerprint, task.first_free_id,
                           life.table),
            next_frame=0 if task.is_sparse else task.start_frame,
        )
        if task.track_from is not None and state.start_frame is not None:
            # An object group tracks from the video's first prompt, as the unsplit run does.
            state = replace(state, start_frame=min(state.start_frame, task.track_from))
        data = state.to_bytes()
        if not task.is_sparse:  # a sparse pass is cheap: re-run, never resumed
            self.output.write(init_state_path(task.video_id, task.segment), data)
        return data

    def _start_seeded(self, task: VideoTask, life: Lifecycle) -> bytes:
        """Every object of the sparse pass, with its id, whether or not it shows here."""
        assert task.seed_state is not None
        state = MemoryState.from_bytes(task.seed_state, expect_model=self.model.identity)
        for o in state.objects:
            life.born(o.obj_id, min(o.cond, default=task.start_frame), ORIGIN_PROMPT)
        state = replace(state, meta=TrackMeta(task.video_id, task.segment, task.fingerprint,
                                              task.first_free_id, life.table))
        data = state.to_bytes()
        self.output.write(init_state_path(task.video_id, task.segment), data)
        return data

    def run_chunk(
        self, spec: ChunkSpec, task: VideoTask, state_source: StateSource,
        keep: int | None = None,
    ) -> tuple[ChunkResult, bytes]:
        """``keep``: the chunk whose state a retry of this call starts from (the first
        chunk's input when one call runs several): retention never drops it."""
        t0 = time.perf_counter()
        frames = self.frames(task)
        encoded, data = self._encode_while_waiting(spec, task, frames, state_source)
        state = MemoryState.from_bytes(data, expect_model=self.model.identity)
        if state.next_frame != spec.start:
            raise RuntimeError(
                f"{spec.video_id} chunk {spec.chunk_idx} starts at frame {spec.start} but its "
                f"state continues at frame {state.next_frame}"
            )
        if task.is_sparse:
            return self._sparse_chunk(spec, task, frames, state, encoded, t0)
        rows = ChunkMasks(spec.video_id, spec.chunk_idx)
        life = Lifecycle(state.meta.lifecycle_table(), self.discovery)
        last: dict[int, str] = dict(state.meta.last_masks)  # obj -> rle, last frame
        keyframes = (self.discovery.keyframes(task.start_frame, spec.start, spec.end)
                     if self.discovery else [])
        tracked, pos, chunks_done = 0, spec.start, state.chunks_done
        masks_out = MaskEncoder(rows, workers=self.tracker.host_threads)
        try:
            for stop in [*keyframes, spec.end]:
                if pos < stop:
                    run = self.tracker.track(state, frames, stop, encoded=encoded)
                    encoded = []
                    for out in run:  # masks are encoded behind the model, in frame order
                        masks_out.add(out.frame_idx, task.info.time_s(out.frame_idx),
                                      out.obj_ids, out.masks, out.scores)
                        tracked += 1
                    for done in masks_out.done():
                        for obj_id, enc in zip(done.obj_ids, done.encoded, strict=True):
                            life.observe(obj_id, done.frame_idx, enc.area > 0)
                            last[obj_id] = enc.rle
                    state = run.state
                    retired = set(life.retired_ids()) & set(state.obj_ids)
                    if retired:
                        state = state.without(retired)
                        for obj_id in retired:
                            last.pop(obj_id, None)
                    pos = stop
                if stop < spec.end:  # a keyframe: look for objects no track explains
                    state, encoded = self._discover(state, frames, stop, task, life, last)
        finally:  # a failed chunk (retried elsewhere) leaves no encoding threads
            masks_out.close()
        state = replace(state, chunks_done=chunks_done + 1).with_meta(
            lifecycle=life.table, last_masks={o: last[o] for o in state.obj_ids if o in last})
        out_bytes = state.to_bytes()
        self.output.write(state_path(spec.video_id, spec.segment, spec.chunk_idx), out_bytes)
        part = write_mask_part(self.output, rows, spec.segment, staged=task.staged)
        self._drop_old_state(spec, task, keep)
        result = ChunkResult(
            spec=spec, part=part, rows=rows.num_rows, frames_tracked=tracked,
            stats=rows.stats, encoded_ahead=len(encoded), seconds=time.perf_counter() - t0,
        )
        return result, out_bytes

    def _drop_old_state(self, spec: ChunkSpec, task: VideoTask, keep: int | None) -> None:
        """Retention, once this chunk's part is committed: the state two chunks back, if
        not kept. Not the one back: it is this chunk's input, which a retry needs if this
        result never reaches the driver (the actor or its node dies after the commit);
        nor ``keep``, the input of a call of several chunks. Finishing drops those."""
        old = spec.chunk_idx - 2
        if old in task.drop_states and old != keep:
            self.output.delete(state_path(spec.video_id, spec.segment, old))

    def _discover(self, state: MemoryState, frames: FrameSource, frame: int, task: VideoTask,
                  life: Lifecycle, last: dict[int, str]) -> tuple[MemoryState, list[EncodedFrame]]:
        """Add the keyframe's unexplained proposals as new objects prompted by their masks.

        Returns the state and the keyframe through the image encoder: prompting and
        then tracking it take the features from there, so it is decoded and encoded
        once (besides the proposal generator's own pass).
        """
        assert self.discovery is not None
        if self._discoverer is None:
            self._discoverer = Discoverer(self.model, self.discovery)
        h, w = state.height, state.width
        rgb = read_one(frames, frame)
        live = [rle.decode(last[o], h, w) for o in state.obj_ids if o in last]
        live += [p.mask() for p in task.prompts if p.frame == frame and p.mask_rle is not None]
        found = self._discoverer.new_objects(rgb, live)
        encoded = [self.tracker.encode(frame, rgb)]
        next_id = state.meta.next_id
        prompts = []
        for i, proposal in enumerate(found):
            enc = rle.encode(proposal.mask)
            prompts.append(Prompt(obj_id=next_id + i, frame=frame, mask_rle=enc.rle,
                                  mask_size=(h, w)))
            life.born(next_id + i, frame, ORIGIN_DISCOVERED)
        if not prompts:
            return state, encoded
        state = self.tracker.add_prompts(state, frames, prompts, encoded=encoded)
        return state.with_meta(next_id=next_id + len(prompts)), encoded

    def _sparse_chunk(self, spec: ChunkSpec, task: VideoTask, frames: FrameSource,
                      state: MemoryState, encoded: list[EncodedFrame], t0: float
                      ) -> tuple[ChunkResult, bytes]:
        """Track sampled frames only; hand back the memory at each segment start reached.

        A segment starting at frame ``s`` is seeded with the state after the samples
        before ``s`` (``track.seeding``): the chunk stops there, snapshots, goes on.
        """
        indices = task.frame_indices or ()
        stops: dict[int, list[int]] = {}  # samples tracked -> segment starts seeded there
        for start in task.seed_frames:
            before = bisect.bisect_left(indices, start)
            if spec.start < before <= spec.end or before == spec.start == 0:
                stops.setdefault(before, []).append(start)
        seeds: Seeds = {}
        tracked = 0
        for stop in sorted({*stops, spec.end}):
            if state.next_frame < stop:
                run = self.tracker.track(state, frames, stop, encoded=encoded)
                tracked += sum(1 for _ in run)
                state, encoded = run.state, [e for e in encoded if e.frame_idx >= stop]
            for start in stops.get(stop, ()):
                seeds[start] = seed_state(state, indices, start, task.info.num_frames).to_bytes()
        result = ChunkResult(spec=spec, part="", rows=0, frames_tracked=tracked, stats={},
                             encoded_ahead=len(encoded), seconds=time.perf_counter() - t0,
                             seeds=seeds)
        return result, state.to_bytes()

    def _encode_while_waiting(
        self, spec: ChunkSpec, task: VideoTask, frames: VideoFrames, state_source: StateSource
    ) -> tuple[list[EncodedFrame], bytes]:
        """Encode the chunk's first frames until the state arrives (or a bound)."""
        data = state_source(False)
        encoded: list[EncodedFrame] = []
        first = task.first_tracked_frame
        if data is None and first is not None and first < spec.end and self.encode_ahead > 0:
            start = max(spec.start, first)
            stop = min(spec.end, start + self.encode_ahead)
            with contextlib.closing(frames.read(start, stop)) as reader:
                for idx, rgb in reader:
                    encoded.append(self.tracker.encode(idx, rgb))
                    data = state_source(False)
                    if data is not None:
                        break
        if data is None:
            data = state_source(True)
        assert data is not None
        return encoded, data
