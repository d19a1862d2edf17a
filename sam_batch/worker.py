"""What one GPU worker does: start a video, run a chunk, write its part.

Plain Python, so it is tested without Ray; ``runtime.actor`` wraps it in a Ray
actor. A chunk's work is: decode and encode frames (ahead of the state, if the
state is still on its way), track from the incoming state, encode masks as
rows, checkpoint the outgoing state, then commit the chunk's Parquet part. The
part is committed last, so a part that exists always has its state beside it
and a resumed job can continue right after it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sam_batch.frames import VideoFrames
from sam_batch.model import ModelIdentity, ModelSpec, load_model
from sam_batch.plan import ChunkSpec
from sam_batch.prompts import Prompt
from sam_batch.state import MemoryState
from sam_batch.storage import Location, safe_name
from sam_batch.tracker import ChunkTracker, EncodedFrame
from sam_batch.video import VideoInfo
from sam_batch.writer import ChunkMasks, ObjectStats, state_path, write_mask_part

#: Returns the incoming state's bytes; with ``block=False`` None while not ready.
StateSource = Callable[[bool], "bytes | None"]


@dataclass(frozen=True)
class VideoTask:
    """One video as the workers need it: where, what it is, and its prompts."""

    video_id: str
    url: str
    info: VideoInfo
    prompts: tuple[Prompt, ...]
    #: Decides whether a checkpoint found on resume belongs to this same work.
    fingerprint: str = ""

    @property
    def first_tracked_frame(self) -> int | None:
        return min((p.frame for p in self.prompts), default=None)


@dataclass(frozen=True)
class ChunkResult:
    """What the driver learns from a finished chunk (the masks stay in the part)."""

    spec: ChunkSpec
    part: str
    rows: int
    frames_tracked: int
    stats: dict[int, ObjectStats]
    encoded_ahead: int
    seconds: float


def init_state_path(video_id: str) -> str:
    return f"_states/{safe_name(video_id)}/init.state"


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
    ):
        if threads:
            torch.set_num_threads(threads)
        self.model = load_model(model)
        self.tracker = ChunkTracker(self.model)
        self.output = Location(output_url, storage_options)
        self.input_storage_options = dict(input_storage_options or {})
        self.encode_ahead = encode_ahead

    def identity(self) -> ModelIdentity:
        return self.model.identity

    def frames(self, task: VideoTask) -> VideoFrames:
        return VideoFrames(task.info, self.input_storage_options)

    def start_video(self, task: VideoTask) -> bytes:
        """Encode every prompt of the video: the state before its first chunk."""
        state = self.tracker.start(
            self.frames(task), task.prompts,
            extra={"video_id": task.video_id, "fingerprint": task.fingerprint},
        )
        data = state.to_bytes()
        self.output.write(init_state_path(task.video_id), data)
        return data

    def run_chunk(
        self, spec: ChunkSpec, task: VideoTask, state_source: StateSource
    ) -> tuple[ChunkResult, bytes]:
        t0 = time.perf_counter()
        frames = self.frames(task)
        encoded, data = self._encode_while_waiting(spec, task, frames, state_source)
        state = MemoryState.from_bytes(data, expect_model=self.model.identity)
        if state.next_frame != spec.start:
            raise RuntimeError(
                f"{spec.video_id} chunk {spec.chunk_idx} starts at frame {spec.start} but its "
                f"state continues at frame {state.next_frame}"
            )
        rows = ChunkMasks(spec.video_id, spec.chunk_idx)
        run = self.tracker.track(state, frames, spec.end, encoded=encoded)
        tracked = 0
        for out in run:
            rows.add(out.frame_idx, task.info.time_s(out.frame_idx), out.obj_ids, out.masks,
                     out.scores)
            tracked += 1
        out_bytes = run.state.to_bytes()
        self.output.write(state_path(spec.video_id, spec.segment, spec.chunk_idx), out_bytes)
        part = write_mask_part(self.output, rows, spec.segment)
        result = ChunkResult(
            spec=spec, part=part, rows=rows.num_rows, frames_tracked=tracked,
            stats=rows.stats, encoded_ahead=len(encoded), seconds=time.perf_counter() - t0,
        )
        return result, out_bytes

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
