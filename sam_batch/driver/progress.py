"""Progress of a running job: a bar in a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sam_batch.runtime.scheduler import Scheduler

log = logging.getLogger("sam_batch")


class Progress:
    """Videos and chunks done, frames per second and an ETA, every few seconds.

    ``mode`` is ``bar`` (tqdm), ``log`` (a line every ``every_s`` seconds),
    ``off``, or ``auto``: a bar when stderr is a terminal, log lines otherwise
    (cluster job logs).
    """

    def __init__(self, mode: str = "auto", every_s: float = 10.0):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode
        self.every_s = every_s
        self.t0 = time.monotonic()
        self._last = 0.0
        self._bar = None

    def __call__(self, scheduler: Scheduler) -> None:
        if self.mode == "off":
            return
        now = time.monotonic()
        line = self.line(scheduler)
        if self.mode == "bar":
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=1, bar_format="{desc}", disable=False)
            self._bar.set_description_str(line)
        elif now - self._last >= self.every_s:
            self._last = now
            log.info(line)

    def line(self, scheduler: Scheduler) -> str:
        videos = scheduler.videos
        done = sum(v.status == "done" for v in videos)
        failed = sum(v.status == "failed" for v in videos)
        planned = [v for v in videos if v.chains or v.released_chunks is not None]
        chunks_total = sum(v.num_chunks for v in planned)
        chunks_done = sum(v.chunks_done for v in planned)
        frames = sum(v.frames_tracked for v in videos)
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        fps = frames / elapsed
        eta = "?"
        if chunks_done and chunks_total:
            unplanned = sum(1 for v in videos if not v.chains and v.status == "pending")
            per_video = chunks_total / max(len(planned), 1)
            left = chunks_total - chunks_done + unplanned * per_video
            eta = str(timedelta(seconds=int(left * elapsed / chunks_done)))
        return (f"videos {done + failed}/{len(videos)} ({failed} failed) | "
                f"chunks {chunks_done}/{chunks_total} | {fps:.1f} frames/s | ETA {eta}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
