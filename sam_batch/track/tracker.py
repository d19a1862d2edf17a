"""Track a chunk of frames with SAM 2, from a memory state to a memory state.

The tracker does not re-implement SAM 2. It rebuilds the predictor's own
inference session from a ``MemoryState`` (``session``), lets sam2's
``add_new_points_or_box`` / ``add_new_mask``, ``propagate_in_video_preflight``
and ``propagate_in_video`` do the work (a chunk in flight: ``chunk_run``), and
between frames drops what SAM 2 will never read again. So a video run as
consecutive chunks, each in a fresh tracker built only from the previous
chunk's state, gives the numbers of one uninterrupted pass, while memory stays
bounded by the chunk, not the video.

>>> import numpy as np
>>> from sam_batch.track.model import ModelSpec, load_model
>>> from sam_batch.track.frames import ArrayFrames
>>> from sam_batch.plan.prompts import Prompt
>>> model = load_model(ModelSpec(random_weights=True, image_size=128, device="cpu"))
>>> video = ArrayFrames(np.zeros((4, 48, 64, 3), np.uint8))
>>> tracker = ChunkTracker(model)
>>> state = tracker.start(video, [Prompt(obj_id=1, frame=0, points=((30.0, 20.0),), labels=(1,))])
>>> run = tracker.track(state, video, end=2)
>>> [(out.frame_idx, out.masks.shape) for out in run]
[(0, (1, 48, 64)), (1, (1, 48, 64))]
>>> run.state.next_frame
2
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from sam_batch.errors import PromptError, SamBatchError
from sam_batch.plan.prompts import Prompt, validate_prompts
from sam_batch.plan.track_meta import TrackMeta
from sam_batch.track.chunk_run import ChunkRun
from sam_batch.track.frames import FrameSource, read_one
from sam_batch.track.model import LoadedModel, inference
from sam_batch.track.preprocess import FramePreparer, Where
from sam_batch.track.session import EncodedFrame, SessionBridge
from sam_batch.track.state import MemoryState


class ChunkTracker:
    """Runs SAM 2 over chunks of one video. Holds the model, never a video's state."""

    def __init__(self, model: LoadedModel, keep_logits: bool = False,
                 host_threads: int | None = None, preprocess: Where = "auto"):
        """``host_threads``: threads that prepare frames ahead of the model (default:
        the torch thread budget, at most 4). ``preprocess``: where frames are resized
        and normalised (``preprocess.FramePreparer``; the same numbers either way)."""
        self.model = model
        self.host_threads = host_threads
        self.prepare = FramePreparer(model.image_size, model.device, preprocess)
        self.predictor = model.predictor
        self.keep_logits = keep_logits
        self._pos_enc: list[torch.Tensor] | None = None
        self.bridge = SessionBridge(model.predictor, model.device, model.identity.precision)

    # -- starting and prompting -------------------------------------------------

    def start(
        self,
        frames: FrameSource,
        prompts: Sequence[Prompt],
        meta: TrackMeta | None = None,
        next_frame: int = 0,
    ) -> MemoryState:
        """The state before the first chunk, with every prompt already encoded.

        SAM 2 attends to every prompted frame, future ones included, so the
        predictor encodes all prompts before it tracks anything; so do we, and
        the state carries those memories to every chunk. A seeded segment
        starts at ``next_frame``, from prompts (seeds) on or after it.
        """
        empty = MemoryState(
            model=self.model.identity,
            num_frames=frames.num_frames,
            height=frames.height,
            width=frames.width,
            next_frame=next_frame,
            start_frame=None,
            objects=(),
            maskmem_pos_enc=None,
            meta=meta or TrackMeta(),
        )
        return self.add_prompts(empty, frames, prompts)

    def add_prompts(
        self, state: MemoryState, frames: FrameSource, prompts: Sequence[Prompt],
        encoded: Sequence[EncodedFrame] = (),
    ) -> MemoryState:
        """Encode prompts known only from this point on (new objects or frames).

        ``encoded``: prompted frames already through the image encoder (``encode``);
        SAM 2 takes them from its feature cache instead of decoding and encoding again.
        """
        self.model.identity.require_same(state.model)
        prompts = validate_prompts(prompts, state.num_frames, state.width, state.height)
        if not prompts:
            return state
        late = [p for p in prompts if p.frame < state.next_frame]
        if late:
            p = late[0]
            raise PromptError(
                f"prompt for object {p.obj_id} on frame {p.frame} lies before frame "
                f"{state.next_frame}, which tracking has already passed; re-run from the "
                "chunk that holds that frame"
            )
        for o in state.objects:
            for p in prompts:
                if p.obj_id == o.obj_id and p.frame in o.cond:
                    raise PromptError(
                        f"object {p.obj_id} already has a prompt on frame {p.frame}"
                    )
        session = self.bridge.open(state, RandomAccessImages(frames, self), encoded)
        with inference(self.model):
            for p in prompts:
                self.add_prompt(session, p)
            self.predictor.propagate_in_video_preflight(session)
        start_frame = min(p.frame for p in prompts)
        if state.start_frame is not None:
            start_frame = min(start_frame, state.start_frame)
        return self.bridge.snapshot(session, replace(state, start_frame=start_frame))

    def add_prompt(self, session: dict, p: Prompt) -> None:
        if p.mask_rle is not None:
            self.predictor.add_new_mask(session, p.frame, p.obj_id, torch.from_numpy(p.mask()))
            return
        points = [list(xy) for xy in p.points] or None
        labels = list(p.labels) or None
        box = list(p.box) if p.box is not None else None
        self.predictor.add_new_points_or_box(
            session, p.frame, p.obj_id, points=points, labels=labels, box=box
        )

    # -- tracking ----------------------------------------------------------------

    def track(
        self,
        state: MemoryState,
        frames: FrameSource,
        end: int,
        encoded: Sequence[EncodedFrame] = (),
    ) -> ChunkRun:
        """Track frames ``[state.next_frame, end)``; iterate the run for outputs.

        ``encoded`` are this chunk's first frames already through the image
        encoder (``encode``), in order from the first frame to track.
        """
        self.model.identity.require_same(state.model)
        if not state.next_frame < end <= state.num_frames:
            raise SamBatchError(
                f"chunk end {end} must lie in ({state.next_frame}, {state.num_frames}]: "
                f"the state continues at frame {state.next_frame}"
            )
        return ChunkRun(self, state, frames, end, encoded)

    def encode_image(self, rgb: np.ndarray) -> torch.Tensor:
        """A frame as the model's input batch ``[1, 3, S, S]`` on its device."""
        return self.prepare(rgb).unsqueeze(0)

    def encode(self, frame_idx: int, rgb: np.ndarray) -> EncodedFrame:
        """Run the image encoder on one frame, as sam2's ``_get_image_feature`` would."""
        image = self.encode_image(rgb)
        with inference(self.model):
            backbone_out = self.predictor.forward_image(image)
        # The positional encodings are one constant per level; keep one copy
        # instead of one per encoded frame (tens of MB each at 1024 px).
        pos = backbone_out["vision_pos_enc"]
        if self._pos_enc is None or [p.shape for p in pos] != [p.shape for p in self._pos_enc]:
            self._pos_enc = pos
        elif all(torch.equal(a, b) for a, b in zip(pos, self._pos_enc, strict=True)):
            backbone_out["vision_pos_enc"] = self._pos_enc
        return EncodedFrame(frame_idx, image, backbone_out)


class RandomAccessImages:
    """``inference_state["images"]`` for prompted frames, decoded on demand."""

    def __init__(self, frames: FrameSource, tracker: ChunkTracker):
        self._frames = frames
        self._tracker = tracker
        self._cache: dict[int, torch.Tensor] = {}

    def __getitem__(self, frame_idx: int) -> torch.Tensor:
        if frame_idx not in self._cache:
            rgb = read_one(self._frames, frame_idx)
            self._cache = {frame_idx: self._tracker.encode_image(rgb)[0]}
        return self._cache[frame_idx]

