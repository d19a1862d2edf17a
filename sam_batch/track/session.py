"""sam2's inference session, rebuilt from a ``MemoryState`` and read back into one.

SAM 2 keeps a video's memory in one dict (``inference_state``) that lives as long
as the video. A chunk instead rebuilds that dict from the state it was handed,
lets sam2's own code fill it, drops between frames what SAM 2 will never read
again, and snapshots what it still will into the state for the next chunk. The
frames sam2 reads come through the session's ``images`` (the tracker's frame
feeds) and ``cached_features``, where frames encoded ahead (``EncodedFrame``)
wait for the state.

One deliberate difference: SAM 2 stores spatial memories in bfloat16. Under a
float32 run (the CPU default) it then fails with "mat1 and mat2 must have the
same dtype" as soon as an object has memories but no past object pointer (an
object first prompted on a later frame). We hand those memories to SAM 2
upcast to float32, which is exact, so every result the official predictor
produces is reproduced bit for bit and the failing case runs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

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


class SessionBridge:
    """Between sam2's ``inference_state`` and our ``MemoryState``, for one model."""

    def __init__(self, predictor: torch.nn.Module, device: torch.device, precision: str):
        self.predictor = predictor
        self.device = device
        # Under float32, memories go to SAM 2 upcast (see the module docstring).
        self.memory_dtype = torch.float32 if precision == "float32" else torch.bfloat16

    def open(self, state: MemoryState, images: object,
             encoded: Sequence[EncodedFrame] = ()) -> dict:
        """sam2's ``inference_state`` as ``init_state`` makes it, filled from ``state``.

        ``encoded``: frames already through the image encoder, served from sam2's
        feature cache instead of being decoded and encoded again.
        """
        device = self.device
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
            "cached_features": _EncodedAhead(encoded) if encoded else {},
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
        device = self.device
        feats = m.maskmem_features
        return {
            "maskmem_features": None if feats is None else feats.to(device, self.memory_dtype),
            "maskmem_pos_enc": pos_enc,
            "pred_masks": None if m.pred_masks is None else m.pred_masks.to(device),
            "obj_ptr": m.obj_ptr.to(device),
            "object_score_logits": (
                None if m.object_score_logits is None else m.object_score_logits.to(device)
            ),
        }

    def upcast_new_memories(self, session: dict, frame_idx: int | None = None) -> None:
        """Memories sam2 just stored (on ``frame_idx``, or anywhere) in the run's dtype."""
        if self.memory_dtype == torch.bfloat16:
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

    def prune(self, session: dict, next_frame: int) -> None:
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

    def snapshot(self, session: dict, base: MemoryState, next_frame: int | None = None,
                 chunks_done: int | None = None) -> MemoryState:
        """``base`` with the memories of ``session`` that frames from ``next_frame`` on read."""
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


def _frame_memory(entry: dict, keep_outputs: bool, keep_maskmem: bool = True) -> FrameMemory:
    feats = entry["maskmem_features"] if keep_maskmem else None
    return FrameMemory(
        maskmem_features=None if feats is None else feats.to(torch.bfloat16),
        obj_ptr=entry["obj_ptr"],
        pred_masks=entry["pred_masks"] if keep_outputs else None,
        object_score_logits=entry["object_score_logits"] if keep_outputs else None,
    )
