"""Which memory-state checkpoints a dataset keeps (``--keep-states``).

A job writes the state after every chunk, next to the chunk's part, so that a
crash loses at most a chunk. Once the next chunk is committed, resume no longer
needs it: resume needs only the newest state of each segment. What else to keep
is a trade-off between storage and corrections (re-tracking from a frame
``t``), which start from the nearest kept state at or before ``t`` and replay
the frames between:

- ``last``: the newest state of each segment only. Smallest; a correction
  replays from the segment's start (its init state is always kept).
- ``every:N``: besides the newest, the first state at or after every multiple
  of ``N`` frames. A correction replays fewer than ``N`` frames plus a chunk.
- ``all``: every chunk's state (a correction replays less than a chunk).

A state of ``sam2.1_hiera_t`` at 1024 px is ~3.5-3.9 MiB per object, mostly the
spatial memories of the last seven frames, while the masks of an object-hour of
real footage are ~0.2 GiB: the default ``every:27000`` (15 minutes at 30 fps)
keeps five states per object-hour, under a tenth of the masks' bytes, and a
correction replays at most ~15 minutes of video.

>>> policy = KeepStates.parse("every:100")
>>> [policy.keeps(start, start + 64, last=False) for start in (0, 64, 128, 192)]
[False, True, False, True]
>>> KeepStates.parse("last").keeps(0, 64, last=True), str(policy)
(True, 'every:100')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sam_batch.errors import ConfigError
from sam_batch.media.storage import Location

DEFAULT_KEEP_STATES = "every:27000"


@dataclass(frozen=True)
class KeepStates:
    mode: str  # "last", "every" or "all"
    every: int = 0  # frames, for "every"

    @classmethod
    def parse(cls, text: str) -> KeepStates:
        mode, _, n = str(text).partition(":")
        if mode in ("last", "all") and not n:
            return cls(mode)
        if mode == "every" and n.isdigit() and int(n) > 0:
            return cls("every", int(n))
        raise ConfigError(
            f"keep_states must be 'last', 'all' or 'every:N' (N frames > 0), not {text!r}"
        )

    def __str__(self) -> str:
        return f"every:{self.every}" if self.mode == "every" else self.mode

    def keeps(self, start: int, end: int, last: bool) -> bool:
        """Whether the state after the chunk of frames ``[start, end)`` is kept for good.

        ``last``: the chunk is its segment's last (its state is the newest).
        """
        if last or self.mode == "all":
            return True
        if self.mode == "every":
            return start // self.every < end // self.every
        return False


def prune_states(loc: Location, folder: str, drop: Iterable[str]) -> int:
    """Delete the states in ``drop`` that exist under ``folder`` (one listing); returns
    how many were deleted."""
    present = set(loc.list(folder, ".state"))
    gone = 0
    for path in sorted(set(drop) & present):
        loc.delete(path)
        gone += 1
    return gone
