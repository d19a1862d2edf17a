"""One chunk in flight: sam2's ``propagate_in_video`` over ``[next_frame, end)``.

A run opens sam2's session from the incoming state (``session``), feeds it
frames decoded and prepared ahead on host threads (``pipeline``), hands each
frame's masks out as soon as the frame is done, prunes the session between
frames and, at the end, snapshots the state the next chunk starts from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from sam_batch.errors import SamBatchError
from sam_batch.track.frames import FrameSource
from sam_batch.track.model import inference
from sam_batch.track.pipeline import TIMELINE, FramePrefetcher
from sam_batch.track.session import EncodedFrame
from sam_batch.track.state import MemoryState

if TYPE_CHECKING:
    from sam_batch.track.tracker import ChunkTracker


@dataclass(frozen=True)
class FrameOutput:
    """Every tracked object's mask on one frame, at the video's resolution."""

    frame_idx: int
    obj_ids: tuple[int, ...]
    masks: np.ndarray  # bool [n, H, W]
    scores: np.ndarray  # float32 [n]: sigmoid of SAM 2's object-presence logit
    logits: torch.Tensor | None = None  # float32 [n, H, W], only with keep_logits


class ChunkRun:
    """One chunk in flight: iterate for per-frame outputs, then read ``state``.

    Outputs leave as soon as each frame is done; the run keeps only the memory
    SAM 2 still reads, so a chunk of any length runs in bounded memory.
    """

    def __init__(self, tracker: ChunkTracker, state: MemoryState, frames: FrameSource, end: int,
                 encoded: Sequence[EncodedFrame] = ()):
        self._tracker = tracker
        self._state_in = state
        self._frames = frames
        self._end = end
        self._encoded = list(encoded)
        self._state_out: MemoryState | None = None
        self._started = False

    @property
    def state(self) -> MemoryState:
        if self._state_out is None:
            raise RuntimeError("iterate the chunk run to its end before reading its state")
        return self._state_out

    def __iter__(self) -> Iterator[FrameOutput]:
        if self._started:
            raise RuntimeError("a chunk run can be iterated once")
        self._started = True
        tracker, state, end = self._tracker, self._state_in, self._end
        first = state.next_frame if state.start_frame is None else max(
            state.next_frame, state.start_frame
        )
        if not state.objects or first >= end:
            self._state_out = replace(state, next_frame=end, chunks_done=state.chunks_done + 1)
            return
        encoded = [e for e in self._encoded if first <= e.frame_idx < end]
        if [e.frame_idx for e in encoded] != list(range(first, first + len(encoded))):
            raise SamBatchError(f"encoded frames must run in order from frame {first}")
        rest = first + len(encoded)  # encoded ahead may already cover the whole chunk
        prefetch = FramePrefetcher(
            self._frames.read(rest, end) if rest < end else iter(()),
            tracker.prepare.host, workers=tracker.host_threads,
        )
        try:
            yield from self._propagate(state, first, end, encoded,
                                       _StreamingImages(iter(prefetch), tracker.prepare.device))
        finally:
            prefetch.close()

    def _propagate(self, state: MemoryState, first: int, end: int,
                   encoded: list[EncodedFrame], images: _StreamingImages
                   ) -> Iterator[FrameOutput]:
        tracker = self._tracker
        bridge = tracker.bridge
        session = bridge.open(state, images, encoded)
        with inference(tracker.model):
            frames = tracker.predictor.propagate_in_video(
                session, start_frame_idx=first, max_frame_num_to_track=end - first - 1
            )
        while True:
            with inference(tracker.model), TIMELINE.span("track"):
                item = next(frames, None)
                if item is None:
                    break
                frame_idx, obj_ids, video_res_masks = item
                out = self._output(session, frame_idx, obj_ids, video_res_masks)
                bridge.upcast_new_memories(session, frame_idx)
                bridge.prune(session, frame_idx + 1)
            yield out
        self._state_out = bridge.snapshot(
            session, state, next_frame=end, chunks_done=state.chunks_done + 1
        )

    def _output(self, session: dict, frame_idx: int, obj_ids: list, logits: torch.Tensor
                ) -> FrameOutput:
        scores = []
        for out in session["output_dict_per_obj"].values():
            entry = out["cond_frame_outputs"].get(frame_idx) or out["non_cond_frame_outputs"][
                frame_idx
            ]
            scores.append(torch.sigmoid(entry["object_score_logits"].float()).item())
        logits = logits[:, 0]
        # Thresholded and transposed where the logits are (the GPU, in production):
        # what leaves the device is one byte a pixel, already in the column-major
        # order RLE reads (dataset/rle.py), never float logits at video resolution.
        masks = (logits > 0).transpose(1, 2).contiguous().cpu().numpy().transpose(0, 2, 1)
        return FrameOutput(
            frame_idx=frame_idx,
            obj_ids=tuple(int(i) for i in obj_ids),
            masks=masks,
            scores=np.asarray(scores, dtype=np.float32),
            logits=logits.float().cpu() if self._tracker.keep_logits else None,
        )


class _StreamingImages:
    """sam2's ``inference_state["images"]``, fed with frames prepared ahead (``pipeline``).

    SAM 2 asks for each frame once, in order (its feature cache holds the last
    frame), so only the prefetcher's few frames ahead are ever held.
    """

    def __init__(self, frames: Iterator[tuple[int, torch.Tensor]],
                 on_device: Callable[[torch.Tensor], torch.Tensor]):
        self._frames = frames
        self._on_device = on_device

    def __getitem__(self, frame_idx: int) -> torch.Tensor:
        for idx, prepared in self._frames:
            if idx == frame_idx:
                return self._on_device(prepared)
            if idx > frame_idx:
                break
        raise SamBatchError(f"frame {frame_idx} was asked for but the frame source skipped it")
