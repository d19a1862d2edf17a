"""Automatic discovery: find objects nobody prompted, and keep a life cycle for them.

Dataset generation cannot wait for clicks. On keyframes (every ``K`` frames of
a segment, and on every segment start) sam2's own automatic mask generator
proposes masks; a proposal becomes a new object of the running tracker unless
it is small, low-scoring, or already covered by a live track. Each discovered
object then lives through ``tentative`` → ``confirmed`` (a few consecutive
frames with a mask) → ``lost`` (empty) → ``retired`` (empty for ``retire_after``
frames: dropped from the memory state, so dead objects cost nothing). Only
confirmed objects reach the dataset; a tentative one that vanished was noise.

The thresholds are plain config (``discovery_options``), defaults below:

==================  =======  ==============================================
option              default  meaning
==================  =======  ==============================================
points_per_side     16       AMG point grid per keyframe
pred_iou_thresh     0.7      AMG's own predicted-IoU filter
stability_thresh    0.85     AMG's stability-score filter
min_area            0.002    smallest proposal, as a fraction of the frame
max_overlap_iou     0.5      drop a proposal with IoU above this to a live track
max_covered         0.6      ... or with this fraction inside live tracks' union
max_new             8        most new objects per keyframe (largest first)
confirm_after       3        consecutive non-empty frames to confirm
retire_after        30       consecutive empty frames to retire
==================  =======  ==============================================

>>> parse_discover("every:30").every, parse_discover("starts").every, parse_discover(None)
(30, None, None)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from sam_batch.errors import ConfigError

TENTATIVE, CONFIRMED, LOST, RETIRED = "tentative", "confirmed", "lost", "retired"


@dataclass(frozen=True)
class DiscoverySettings:
    """When to look for new objects and what counts as one (see the module table)."""

    every: int | None = None  # keyframe period in frames; None: segment starts only
    points_per_side: int = 16
    pred_iou_thresh: float = 0.7
    stability_thresh: float = 0.85
    min_area: float = 0.002
    max_overlap_iou: float = 0.5
    max_covered: float = 0.6
    max_new: int = 8
    confirm_after: int = 3
    retire_after: int = 30

    def keyframes(self, segment_start: int, start: int, end: int) -> list[int]:
        """Keyframes in ``[start, end)`` of a segment beginning at ``segment_start``."""
        frames = {segment_start} if start <= segment_start < end else set()
        if self.every:
            first = segment_start + -(-(start - segment_start) // self.every) * self.every
            frames.update(range(max(first, segment_start), end, self.every))
        return sorted(frames)


def parse_discover(text: str | None, options: Mapping | None = None) -> DiscoverySettings | None:
    """``"every:K"`` (keyframes and segment starts), ``"starts"``, or off (None/"off")."""
    if text in (None, "", "off", False):
        return None
    every: int | None
    if text == "starts":
        every = None
    else:
        kind, _, value = str(text).partition(":")
        if kind != "every" or not value.isdigit() or int(value) < 1:
            raise ConfigError(
                f"discover must be 'every:K' (K >= 1 frames), 'starts' or 'off', not {text!r}"
            )
        every = int(value)
    known = {f.name for f in dataclasses.fields(DiscoverySettings)} - {"every"}
    unknown = set(options or {}) - known
    if unknown:
        raise ConfigError(
            f"unknown discovery_options {sorted(unknown)}; known: {', '.join(sorted(known))}"
        )
    return DiscoverySettings(every=every, **dict(options or {}))


class Lifecycle:
    """Per-object life cycle, kept as plain data in the memory state's ``TrackMeta``.

    >>> life = Lifecycle({}, DiscoverySettings(confirm_after=2, retire_after=2))
    >>> life.born(7, frame=0, origin="discovered")
    >>> for f, present in enumerate([True, True, False, False]):
    ...     _ = life.observe(7, f, present)
    >>> life.status(7), life.retired_ids()
    ('retired', [7])
    """

    def __init__(self, table: dict, settings: DiscoverySettings | None):
        self.table = table  # {str(obj_id): {...}}; str keys survive JSON and torch.save
        self.settings = settings or DiscoverySettings()

    def born(self, obj_id: int, frame: int, origin: str) -> None:
        status = CONFIRMED if origin != "discovered" else TENTATIVE
        self.table[str(obj_id)] = {"origin": origin, "first": frame, "run": 0, "empty": 0,
                                   "status": status, "confirmed": status == CONFIRMED}

    def status(self, obj_id: int) -> str | None:
        entry = self.table.get(str(obj_id))
        return None if entry is None else entry["status"]

    def observe(self, obj_id: int, frame: int, present: bool) -> str:
        if str(obj_id) not in self.table:
            self.born(obj_id, frame, "prompt")
        e = self.table[str(obj_id)]
        if present:
            e["run"], e["empty"] = e["run"] + 1, 0
            confirmed = e["run"] >= self.settings.confirm_after
            if e["status"] == LOST or (e["status"] == TENTATIVE and confirmed):
                e["status"] = CONFIRMED
        else:
            e["run"], e["empty"] = 0, e["empty"] + 1
            if e["status"] == TENTATIVE:
                e["status"] = RETIRED  # never confirmed: noise, stop tracking it now
            elif e["status"] == CONFIRMED:
                e["status"] = LOST
            if (e["status"] == LOST and e["origin"] == "discovered"  # prompts never retire
                    and e["empty"] >= self.settings.retire_after):
                e["status"] = RETIRED
        if e["status"] == CONFIRMED:
            e["confirmed"] = True  # once confirmed, a later retirement keeps the track
        return e["status"]

    def retired_ids(self) -> list[int]:
        return sorted(int(k) for k, e in self.table.items() if e["status"] == RETIRED)

    def kept_ids(self) -> set[int]:
        """Objects whose masks belong in the dataset: all but never-confirmed discoveries."""
        return {int(k) for k, e in self.table.items()
                if e["origin"] != "discovered" or e.get("confirmed")}
