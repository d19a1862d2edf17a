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
        """One line from the scheduler's running counts: constant time per step, however
        many videos the job holds."""
        t = scheduler.tally
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        fps = t.frames / elapsed
        eta = "?"
        if t.chunks_done and t.chunks:
            per_video = t.chunks / max(t.planned, 1)
            left = t.chunks - t.chunks_done + (t.videos - t.planned) * per_video
            eta = str(timedelta(seconds=int(left * elapsed / t.chunks_done)))
        return (f"videos {t.done + t.failed}/{t.videos} ({t.failed} failed) | "
                f"chunks {t.chunks_done}/{t.chunks} | {fps:.1f} frames/s | ETA {eta}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
