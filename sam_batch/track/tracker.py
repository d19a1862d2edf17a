"""Track a chunk of frames with SAM 2, from a memory state to a memory state.

The tracker does not re-implement SAM 2. It rebuilds the predictor's own
inference session from a ``MemoryState``, lets sam2's ``add_new_points_or_box`` /
``add_new_mask``, ``propagate_in_video_preflight`` and ``propagate_in_video`` do
the work, and between frames drops what SAM 2 will never read again. So a video
run as consecutive chunks, each in a fresh tracker built only from the previous
chunk's state, gives the numbers of one uninterrupted pass, while memory stays
bounded by the chunk, not the video.

One deliberate difference: SAM 2 stores spatial memories in bfloat16. Under a
float32 run (the CPU default) it then fails with "mat1 and mat2 must have the
same dtype" as soon as an object has memories but no past object pointer (an
object first prompted on a later frame). We hand those memories to SAM 2
upcast to float32, which is exact, so every result the official predictor
produces is reproduced bit for bit and the failing case runs.

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

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from sam_batch.errors import PromptError, SamBatchError
from sam_batch.plan.prompts import Prompt, validate_prompts
from sam_batch.plan.track_meta import TrackMeta
from sam_batch.track.frames import FrameSource, prepare_frame, read_one
from sam_batch.track.model import LoadedModel, inference
from sam_batch.track.pipeline import TIMELINE, FramePrefetcher
from sam_batch.track.state import FrameMemory, MemoryState, ObjectMemory


@dataclass(frozen=True)
class EncodedFrame:
    """A frame through the image encoder, ready before its memory state is.

    Image encoding depends on no other frame, so a worker may encode a chunk
    while the previous chunk's state is still on its way; SAM 2 then finds
    these features where it caches its own and computes the same numbers.
    """

    frame_idx: int
    image: torch.Tensor  # [1, 3, S, S] as sam2's _get_image_feature builds it
    backbone_out: dict


@dataclass(frozen=True)
class FrameOutput:
    """Every tracked object's mask on one frame, at the video's resolution."""

    frame_idx: int
    obj_ids: tuple[int, ...]
    masks: np.ndarray  # bool [n, H, W]
    scores: np.ndarray  # float32 [n]: sigmoid of SAM 2's object-presence logit
    logits: torch.Tensor | None = None  # float32 [n, H, W], only with keep_logits


class ChunkTracker:
    """Runs SAM 2 over chunks of one video. Holds the model, never a video's state."""

    def __init__(self, model: LoadedModel, keep_logits: bool = False,
                 host_threads: int | None = None):
        """``host_threads``: threads that prepare frames ahead of the model (default:
        the torch thread budget, at most 4)."""
        self.model = model
        self.host_threads = host_threads
        self.predictor = model.predictor
        self.keep_logits = keep_logits
        self._pos_enc: list[torch.Tensor] | None = None
        # Under float32, memories go to SAM 2 upcast (see the module docstring).
        self._memory_dtype = (
            torch.float32 if model.identity.precision == "float32" else torch.bfloat16
        )

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
        session = self._session(state, _RandomAccessImages(frames, self))
        if encoded:
            session["cached_features"] = _EncodedAhead(encoded)
        with inference(self.model):
            for p in prompts:
                self._add_prompt(session, p)
            self.predictor.propagate_in_video_preflight(session)
        start_frame = min(p.frame for p in prompts)
        if state.start_frame is not None:
            start_frame = min(start_frame, state.start_frame)
        return self._snapshot(session, replace(state, start_frame=start_frame))

    def _add_prompt(self, session: dict, p: Prompt) -> None:
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
        image = prepare_frame(rgb, self.model.image_size)
        return image.to(self.model.device).float().unsqueeze(0)

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

    # -- between sam2's session and our state ------------------------------------

    def _session(self, state: MemoryState, images: object) -> dict:
        """sam2's ``inference_state`` as ``init_state`` makes it, filled from ``state``."""
        device = self.model.device
        session = {
            "images": images,
            "num_frames": state.num_frames,
            "offload_video_to_cpu": False,
            "offload_state_to_cpu": False,
            "video_height": state.height,
            "video_width": state.width,
            "device": device,
            "storage_device": device,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": {},
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }
        pos_enc = None
        if state.maskmem_pos_enc is not None:
            pos_enc = [t.to(device) for t in state.maskmem_pos_enc]
            session["constants"]["maskmem_pos_enc"] = pos_enc
        for o in state.objects:
            obj_idx = self.predictor._obj_id_to_idx(session, o.obj_id)
            out = session["output_dict_per_obj"][obj_idx]
            for f, m in o.cond.items():
                out["cond_frame_outputs"][f] = self._to_sam(m, pos_enc)
            for f, m in o.non_cond.items():
                out["non_cond_frame_outputs"][f] = self._to_sam(m, pos_enc)
        return session

    def _to_sam(self, m: FrameMemory, pos_enc: list | None) -> dict:
        device = self.model.device
        feats = m.maskmem_features
        return {
            "maskmem_features": None if feats is None else feats.to(device, self._memory_dtype),
            "maskmem_pos_enc": pos_enc,
            "pred_masks": None if m.pred_masks is None else m.pred_masks.to(device),
            "obj_ptr": m.obj_ptr.to(device),
            "object_score_logits": (
                None if m.object_score_logits is None else m.object_score_logits.to(device)
            ),
        }

    def _upcast_new_memories(self, session: dict, frame_idx: int | None = None) -> None:
        if self._memory_dtype == torch.bfloat16:
            return
        for out in session["output_dict_per_obj"].values():
            for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
                entries = out[kind]
                for f in entries if frame_idx is None else (frame_idx,):
                    entry = entries.get(f)
                    if entry is not None and entry["maskmem_features"] is not None:
                        entry["maskmem_features"] = entry["maskmem_features"].to(torch.float32)

    def _windows(self, next_frame: int, num_frames: int) -> tuple[int, int]:
        """Oldest frame whose spatial memory / pointer SAM 2 may still read from here on.

        Mirrors the frame selection of ``_prepare_memory_conditioned_features``
        for the next frame; later frames only look at later frames.
        """
        p, t = self.predictor, next_frame
        r = p.memory_temporal_stride_for_eval
        wanted = [t]
        for t_pos in range(1, p.num_maskmem):
            t_rel = p.num_maskmem - t_pos
            wanted.append(t - 1 if t_rel == 1 else ((t - 2) // r) * r - (t_rel - 2) * r)
        ptr_floor = t
        if p.use_obj_ptrs_in_encoder:
            ptr_floor = t - (min(num_frames, p.max_obj_ptrs_in_encoder) - 1)
        return min(wanted), ptr_floor

    def _prune(self, session: dict, next_frame: int) -> None:
        """Forget what SAM 2 will not read again, so memory does not grow with time."""
        maskmem_floor, ptr_floor = self._windows(next_frame, session["num_frames"])
        for obj_idx, out in session["output_dict_per_obj"].items():
            non_cond = out["non_cond_frame_outputs"]
            for f in [f for f in non_cond if f < min(maskmem_floor, ptr_floor)]:
                del non_cond[f]
            for f, entry in non_cond.items():
                entry["pred_masks"] = None  # already output
                if f < maskmem_floor:
                    entry["maskmem_features"] = None
            session["frames_tracked_per_obj"][obj_idx].clear()

    def _snapshot(self, session: dict, base: MemoryState, next_frame: int | None = None,
                  chunks_done: int | None = None) -> MemoryState:
        next_frame = base.next_frame if next_frame is None else next_frame
        maskmem_floor, ptr_floor = self._windows(next_frame, base.num_frames)
        objects = []
        for obj_idx, obj_id in session["obj_idx_to_id"].items():
            out = session["output_dict_per_obj"][obj_idx]
            cond = {
                f: _frame_memory(e, keep_outputs=f >= next_frame)
                for f, e in out["cond_frame_outputs"].items()
            }
            non_cond = {
                f: _frame_memory(e, keep_outputs=False, keep_maskmem=f >= maskmem_floor)
                for f, e in out["non_cond_frame_outputs"].items()
                if f >= min(maskmem_floor, ptr_floor) and f < next_frame
            }
            objects.append(ObjectMemory(obj_id=obj_id, cond=cond, non_cond=non_cond))
        pos_enc = session["constants"].get("maskmem_pos_enc")
        return replace(
            base,
            next_frame=next_frame,
            objects=tuple(objects),
            maskmem_pos_enc=None if pos_enc is None else tuple(pos_enc),
            chunks_done=base.chunks_done if chunks_done is None else chunks_done,
        )


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
        size = tracker.model.image_size
        prefetch = FramePrefetcher(
            self._frames.read(rest, end) if rest < end else iter(()),
            lambda rgb: prepare_frame(rgb, size), workers=tracker.host_threads,
        )
        try:
            yield from self._propagate(state, first, end, encoded,
                                       _StreamingImages(iter(prefetch), tracker))
        finally:
            prefetch.close()

    def _propagate(self, state: MemoryState, first: int, end: int,
                   encoded: list[EncodedFrame], images: _StreamingImages
                   ) -> Iterator[FrameOutput]:
        tracker = self._tracker
        session = tracker._session(state, images)
        if encoded:
            session["cached_features"] = _EncodedAhead(encoded)
        predictor = tracker.predictor
        with inference(tracker.model):
            frames = predictor.propagate_in_video(
                session, start_frame_idx=first, max_frame_num_to_track=end - first - 1
            )
        while True:
            with inference(tracker.model), TIMELINE.span("track"):
                item = next(frames, None)
                if item is None:
                    break
                frame_idx, obj_ids, video_res_masks = item
                out = self._output(session, frame_idx, obj_ids, video_res_masks)
                tracker._upcast_new_memories(session, frame_idx)
                tracker._prune(session, frame_idx + 1)
            yield out
        self._state_out = tracker._snapshot(
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

    def __init__(self, frames: Iterator[tuple[int, torch.Tensor]], tracker: ChunkTracker):
        self._frames = frames
        self._tracker = tracker

    def __getitem__(self, frame_idx: int) -> torch.Tensor:
        for idx, prepared in self._frames:
            if idx == frame_idx:
                return prepared.to(self._tracker.model.device).float()
            if idx > frame_idx:
                break
        raise SamBatchError(f"frame {frame_idx} was asked for but the frame source skipped it")


class _EncodedAhead:
    """sam2's ``cached_features`` serving frames encoded ahead, each once.

    On the first frame not found here sam2 replaces this object by its own
    one-frame cache and encodes from then on as usual.
    """

    def __init__(self, encoded: Sequence[EncodedFrame]):
        self._by_frame = {e.frame_idx: e for e in encoded}

    def get(self, frame_idx: int, default: tuple = (None, None)) -> tuple:
        e = self._by_frame.get(frame_idx)
        if e is None:
            return default
        for f in [f for f in self._by_frame if f < frame_idx]:
            del self._by_frame[f]  # past frames are never asked for again
        return e.image, e.backbone_out


class _RandomAccessImages:
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


def _frame_memory(entry: dict, keep_outputs: bool, keep_maskmem: bool = True) -> FrameMemory:
    feats = entry["maskmem_features"] if keep_maskmem else None
    return FrameMemory(
        maskmem_features=None if feats is None else feats.to(torch.bfloat16),
        obj_ptr=entry["obj_ptr"],
        pred_masks=entry["pred_masks"] if keep_outputs else None,
        object_score_logits=entry["object_score_logits"] if keep_outputs else None,
    )
