"""What a memory state says of its tracks besides SAM 2's tensors, readable without torch.

A state's bytes are a short JSON header, ``TrackMeta``, then the tensors
(``track.state``). The header says whose state it is (video, segment, the
fingerprint of the work that made it) and carries the per-object bookkeeping a
worker hands from chunk to chunk: each object's life cycle, its mask on the
last tracked frame, the next free id. The driver checks a checkpoint's
fingerprint on resume, and finishing reads the life cycles to keep the right
tracks, both without importing torch:

    MAGIC | header length (8 bytes, big-endian) | header (JSON) | tensors

>>> meta = TrackMeta("clip", segment=1, fingerprint="ab12", next_id=3, last_masks={1: "xy"})
>>> data = pack(meta, b"tensors")
>>> read_meta(data) == meta, unpack(data)[1]
(True, b'tensors')
>>> meta.with_changes(next_id=5).next_id
5
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

from sam_batch.errors import StateMismatchError

MAGIC = b"sam_batch.memory_state\n"
_LENGTH_BYTES = 8


@dataclass(frozen=True)
class TrackMeta:
    """Where a state comes from, and what the worker tracks of each object."""

    video_id: str = ""
    segment: int = 0
    #: Decides whether a checkpoint found on resume belongs to this same work.
    fingerprint: str = ""
    #: The id the next discovered object gets (above every user id of the video).
    next_id: int = 1
    #: ``{str(obj_id): {...}}``: each object's life cycle (``plan.discovery.Lifecycle``).
    lifecycle: Mapping[str, Mapping] = field(default_factory=dict)
    #: ``{obj_id: rle}``: each live object's mask on the last tracked frame.
    last_masks: Mapping[int, str] = field(default_factory=dict)

    def with_changes(self, **changes: object) -> TrackMeta:
        return replace(self, **changes)

    def lifecycle_table(self) -> dict[str, dict]:
        """A copy of the life cycles that ``Lifecycle`` may update in place."""
        return {k: dict(v) for k, v in self.lifecycle.items()}

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TrackMeta:
        d = json.loads(data)
        d["last_masks"] = {int(k): v for k, v in d["last_masks"].items()}  # JSON keys are str
        return cls(**d)


def pack(meta: TrackMeta, payload: bytes) -> bytes:
    """A state's bytes: the header, then the tensors' ``payload``."""
    header = meta.to_json()
    return MAGIC + len(header).to_bytes(_LENGTH_BYTES, "big") + header + payload


def unpack(data: bytes) -> tuple[TrackMeta, bytes]:
    """The header and the tensors' payload of a state's bytes."""
    start = len(MAGIC) + _LENGTH_BYTES
    if not data.startswith(MAGIC) or len(data) < start:
        raise StateMismatchError(
            "not a sam_batch memory state of this version (states written before the "
            "typed header cannot be read); re-run the video from its start"
        )
    end = start + int.from_bytes(data[len(MAGIC):start], "big")
    try:
        return TrackMeta.from_json(data[start:end]), data[end:]
    except (ValueError, KeyError, TypeError) as e:
        raise StateMismatchError(f"a memory state's header cannot be read: {e}") from e


def read_meta(data: bytes) -> TrackMeta:
    """The header of a state's bytes (the tensors are not read)."""
    return unpack(data)[0]
