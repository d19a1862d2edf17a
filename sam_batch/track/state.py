"""The memory state: exactly what SAM 2 reads to go on tracking at frame ``next_frame``.

SAM 2 tracks frame ``t`` of an object from (sam2_base.py
``_prepare_memory_conditioned_features``): the memories of every prompted
("conditioning") frame, the spatial memories of frames ``t-1 .. t-(num_maskmem-1)``,
the object pointers of frames ``t-1 .. t-(max_obj_ptrs-1)``, one positional
constant, and the video length (it bounds the pointer window). A state holds
those, per object, under global frame indices (pointers carry a temporal encoding
of the signed frame distance, so absolute indices matter), and nothing else: a few
MB per object however long the video. It is plain data; ``ChunkTracker`` runs the
model on it. Its ``TrackMeta`` (provenance and per-object bookkeeping) goes first
in its bytes as a JSON header, which ``plan.track_meta`` reads without torch.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace

import torch

from sam_batch.errors import StateMismatchError
from sam_batch.plan.model_spec import ModelIdentity
from sam_batch.plan.track_meta import TrackMeta, pack, unpack

STATE_FORMAT = "sam_batch.memory_state"
#: 2: the free-form ``extra`` dict became the typed ``TrackMeta`` header.
STATE_VERSION = 2


@dataclass(frozen=True)
class FrameMemory:
    """One frame's memory of one object, in SAM 2's own tensors and dtypes."""

    #: Spatial memory ``[1, C, H/16, W/16]`` in bfloat16, as SAM 2 stores it;
    #: ``None`` once only the pointer is still read.
    maskmem_features: torch.Tensor | None
    obj_ptr: torch.Tensor  # [1, 256]
    #: Low-res mask logits and presence logit of a prompted frame not yet output.
    pred_masks: torch.Tensor | None = None
    object_score_logits: torch.Tensor | None = None

    def to_payload(self) -> dict:
        return {
            "maskmem_features": _cpu(self.maskmem_features),
            "obj_ptr": _cpu(self.obj_ptr),
            "pred_masks": _cpu(self.pred_masks),
            "object_score_logits": _cpu(self.object_score_logits),
        }

    @classmethod
    def from_payload(cls, d: dict) -> FrameMemory:
        return cls(**d)

    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size()
            for t in (self.maskmem_features, self.obj_ptr, self.pred_masks,
                      self.object_score_logits)
            if t is not None
        )


@dataclass(frozen=True)
class ObjectMemory:
    obj_id: int
    #: Every prompted frame of the object, past and future: SAM 2 attends to all.
    cond: dict[int, FrameMemory]
    #: The most recent tracked frames still inside the memory and pointer windows.
    non_cond: dict[int, FrameMemory]


@dataclass(frozen=True)
class MemoryState:
    """Where tracking of one video stands, and the memory to go on from there.

    ``next_frame`` is the first frame not yet tracked: the next chunk must start
    there. ``start_frame`` is the earliest prompted frame of any object; like
    ``SAM2VideoPredictor.propagate_in_video``, tracking begins there and every
    object gets an output on every frame from then on.
    """

    model: ModelIdentity
    num_frames: int
    height: int
    width: int
    next_frame: int
    start_frame: int | None
    objects: tuple[ObjectMemory, ...]
    #: SAM 2's ``maskmem_pos_enc``: one constant for all frames and objects.
    maskmem_pos_enc: tuple[torch.Tensor, ...] | None
    chunks_done: int = 0
    meta: TrackMeta = field(default_factory=TrackMeta)

    @property
    def obj_ids(self) -> tuple[int, ...]:
        return tuple(o.obj_id for o in self.objects)

    def nbytes(self) -> int:
        n = sum(m.nbytes() for o in self.objects for m in (*o.cond.values(), *o.non_cond.values()))
        return n + sum(t.numel() * t.element_size() for t in self.maskmem_pos_enc or ())

    def without(self, obj_ids: set[int] | list[int]) -> MemoryState:
        """The state with these objects forgotten (retired: no memory, no more masks)."""
        drop = set(obj_ids)
        return replace(self, objects=tuple(o for o in self.objects if o.obj_id not in drop))

    def with_meta(self, **changes: object) -> MemoryState:
        """The state with these ``TrackMeta`` fields changed."""
        return replace(self, meta=self.meta.with_changes(**changes))

    def to_bytes(self) -> bytes:
        """Serialize for Ray's object store and for checkpoints (tensors on CPU).

        Read back with ``from_bytes``, which loads with ``weights_only=True``:
        a state file from elsewhere cannot run code. The ``TrackMeta`` header
        comes first (``plan.track_meta.pack``).
        """
        payload = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "model": self.model.to_dict(),
            "num_frames": self.num_frames,
            "height": self.height,
            "width": self.width,
            "next_frame": self.next_frame,
            "start_frame": self.start_frame,
            "chunks_done": self.chunks_done,
            "maskmem_pos_enc": (
                None if self.maskmem_pos_enc is None else [_cpu(t) for t in self.maskmem_pos_enc]
            ),
            "objects": [
                {
                    "obj_id": o.obj_id,
                    "cond": {f: m.to_payload() for f, m in o.cond.items()},
                    "non_cond": {f: m.to_payload() for f, m in o.non_cond.items()},
                }
                for o in self.objects
            ],
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        return pack(self.meta, buf.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes, expect_model: ModelIdentity | None = None) -> MemoryState:
        """Load a state; with ``expect_model``, refuse one made by another model."""
        meta, tensors = unpack(data)
        try:
            payload = torch.load(io.BytesIO(tensors), map_location="cpu", weights_only=True)
        except Exception as e:
            raise StateMismatchError(f"not a sam_batch memory state: {e}") from e
        if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
            raise StateMismatchError("not a sam_batch memory state")
        if payload["version"] != STATE_VERSION:
            raise StateMismatchError(
                f"memory state format version {payload['version']} cannot be read by this "
                f"sam_batch (reads version {STATE_VERSION}); re-run the video from its start"
            )
        model = ModelIdentity.from_dict(payload["model"])
        if expect_model is not None:
            expect_model.require_same(model)
        pos = payload["maskmem_pos_enc"]
        return cls(
            model=model,
            num_frames=payload["num_frames"],
            height=payload["height"],
            width=payload["width"],
            next_frame=payload["next_frame"],
            start_frame=payload["start_frame"],
            chunks_done=payload["chunks_done"],
            meta=meta,
            maskmem_pos_enc=None if pos is None else tuple(pos),
            objects=tuple(
                ObjectMemory(
                    obj_id=o["obj_id"],
                    cond={f: FrameMemory.from_payload(m) for f, m in o["cond"].items()},
                    non_cond={f: FrameMemory.from_payload(m) for f, m in o["non_cond"].items()},
                )
                for o in payload["objects"]
            ),
        )


def _cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to("cpu").contiguous()
