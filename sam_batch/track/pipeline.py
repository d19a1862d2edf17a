"""Keep the model's thread on the model: frames are prepared ahead of it, masks encoded behind.

An actor that decodes a frame, resizes it, runs the model and RLE-encodes the
masks in turn leaves its GPU idle for every host step: at 1080p the host side
alone (decode ~10 ms, sam2's PIL resize ~35 ms, RLE ~4 ms a mask on one core)
caps it far below what the model does. Here decoding runs on its own thread,
the resize on a small pool, and mask encoding on another pool, each bounded, so
the host steps overlap the model and each other. PyAV's decoder, PIL's resize,
torch's kernels and pycocotools' encoder all release the GIL for their work,
so threads are enough and nothing is copied between processes.

Exactness is untouched: the same functions prepare the same pixels and encode
the same masks, in the same order; only when they run changes.

The host threads run at a lower priority (``BACKGROUND_NICE``) than the thread
that feeds the model: when the model's step ends, that thread must run at once
(each millisecond it waits for a core is a millisecond the GPU idles), while the
work ahead and behind it has slack.

``TIMELINE`` records when each step ran, per thread, when switched on (the tests
show the overlap with it).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from sam_batch.dataset import rle
from sam_batch.dataset.writer import ChunkMasks

#: Frames decoded and prepared ahead of the model, at most (a 1024-px frame is 12 MB).
DEFAULT_DEPTH = 8


@dataclass
class Timeline:
    """Spans ``(step, thread name, start, end)`` in ``time.perf_counter`` seconds."""

    enabled: bool = False
    spans: list[tuple[str, str, float, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def span(self, step: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        t0 = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.spans.append((step, threading.current_thread().name, t0,
                                   time.perf_counter()))

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[tuple[str, str, float, float]]]:
        """Switch recording on inside; yields the spans recorded there."""
        with self._lock:
            self.spans = []
        self.enabled = True
        try:
            yield self.spans
        finally:
            self.enabled = False


TIMELINE = Timeline()


#: How much lower the host threads' priority is than the model thread's (Linux nice).
BACKGROUND_NICE = 5


def run_in_background() -> None:
    """Run the calling thread ``BACKGROUND_NICE`` below the process's main thread (Linux
    sets nice per thread, and a thread inherits its creator's; elsewhere, or where
    refused, the thread keeps its priority)."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError):
        base = os.getpriority(os.PRIO_PROCESS, os.getpid())  # the main thread's
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                       min(19, base + BACKGROUND_NICE))


def default_workers() -> int:
    """Threads for each host step: the torch thread budget of this worker (``threads``)."""
    return max(1, min(4, torch.get_num_threads()))


class FramePrefetcher:
    """Frames ``(idx, prepared)`` in order, decoded on one thread and prepared on a pool.

    At most ``depth`` frames wait decoded or prepared; ``close`` stops the decoder
    and closes the frame source from the decoding thread itself (a generator can
    only be closed by the thread that runs it).
    """

    def __init__(self, frames: Iterator[tuple[int, np.ndarray]],
                 prepare: Callable[[np.ndarray], torch.Tensor],
                 workers: int | None = None, depth: int = DEFAULT_DEPTH):
        self._frames = frames
        self._prepare = prepare
        self._pool = ThreadPoolExecutor(workers or default_workers(),
                                        thread_name_prefix="sam_batch-prepare",
                                        initializer=run_in_background)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._decode, name="sam_batch-decode",
                                        daemon=True)
        self._thread.start()

    def _prepare_timed(self, rgb: np.ndarray) -> torch.Tensor:
        with TIMELINE.span("prepare"):
            return self._prepare(rgb)

    def _decode(self) -> None:
        run_in_background()  # before the decoder opens: FFmpeg's threads inherit it
        frames = self._frames
        try:
            while not self._stop.is_set():
                with TIMELINE.span("decode"):
                    item = next(frames, None)
                if item is None:
                    break
                idx, rgb = item
                self._put((idx, self._pool.submit(self._prepare_timed, rgb)))
        except BaseException as e:  # handed to the model's thread, raised there
            self._put(e)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
            self._put(None)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            idx, future = item
            yield idx, future.result()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _encode_masks(masks: np.ndarray) -> list[rle.EncodedMask]:
    with TIMELINE.span("encode"):
        return [rle.encode(m) for m in masks]


@dataclass(frozen=True)
class EncodedFrameMasks:
    """One frame's masks as the dataset holds them, once encoded."""

    frame_idx: int
    obj_ids: tuple[int, ...]
    encoded: tuple[rle.EncodedMask, ...]


class MaskEncoder:
    """RLE-encodes frames' masks on a pool, behind the model, into ``rows`` in frame order.

    ``add`` returns at once unless ``depth`` frames are still being encoded (then it
    waits for the oldest: masks at video resolution are large, and the queue must
    not grow with the chunk). ``done`` hands back every frame finished so far, in
    order, for what the worker decides from areas (life cycles, last masks).
    """

    def __init__(self, rows: ChunkMasks, workers: int | None = None,
                 depth: int = 2 * DEFAULT_DEPTH):
        self.rows = rows
        self._pool = ThreadPoolExecutor(workers or default_workers(),
                                        thread_name_prefix="sam_batch-encode",
                                        initializer=run_in_background)
        self._depth = max(1, depth)
        self._pending: deque[tuple[int, float, tuple[int, ...], np.ndarray, Future]] = deque()
        self._finished: list[EncodedFrameMasks] = []

    def add(self, frame_idx: int, time_s: float, obj_ids: Sequence[int], masks: np.ndarray,
            scores: np.ndarray) -> None:
        future = self._pool.submit(_encode_masks, masks)
        self._pending.append((frame_idx, time_s, tuple(int(o) for o in obj_ids),
                              np.asarray(scores), future))
        while self._pending and (len(self._pending) > self._depth or self._pending[0][4].done()):
            self._append_oldest()

    def _append_oldest(self) -> None:
        frame_idx, time_s, obj_ids, scores, future = self._pending.popleft()
        encoded = future.result()
        self.rows.add_encoded(frame_idx, time_s, obj_ids, encoded, scores)
        self._finished.append(EncodedFrameMasks(frame_idx, obj_ids, tuple(encoded)))

    def done(self) -> list[EncodedFrameMasks]:
        """Wait for every frame added so far; the frames finished since the last call."""
        while self._pending:
            self._append_oldest()
        finished, self._finished = self._finished, []
        return finished

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()

    def __enter__(self) -> MaskEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
