"""A finished video's last steps, in one light task: finalize, compact, prune states.

``finalize`` (``finalize_video`` or ``finalize_stitched``) writes the video's
final parts and its tracks table; then the parts are compacted into a few files
(``dataset.compact``) and the states the retention policy does not keep are
deleted (``dataset.retention``). Each step is idempotent, so a crash anywhere
is finished by the next run: the video's chunks all count as committed, and it
comes back here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sam_batch.dataset.compact import compact_video
from sam_batch.dataset.layout import states_folder
from sam_batch.dataset.retention import prune_states
from sam_batch.media.storage import Location


def complete_video(finalize: Callable[..., int], output_url: str, storage_options: dict,
                   video_id: str, *args: Any, drop_states: Iterable[str] = (),
                   **kwargs: Any) -> int:
    """``finalize(output_url, storage_options, video_id, *args, **kwargs)``, then
    compaction and state pruning; returns the number of objects."""
    objects = finalize(output_url, storage_options, video_id, *args, **kwargs)
    loc = Location(output_url, storage_options)
    compact_video(loc, video_id)
    prune_states(loc, states_folder(video_id), drop_states)
    return objects
