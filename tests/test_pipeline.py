"""The actor keeps its model's thread on the model: decoding, resizing and mask encoding
of a 1080p video run beside tracking, on other threads, at the same time.

Exactness of what the pipeline computes is the business of the exactness tests
(they run through the same ChunkRun); here the promise is about *when*: spans of
the host steps overlap spans of the model, measured on the real worker with the
real sam2 model (random weights), a real H.264 file and real Parquet output.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from media import write_video

from sam_batch.media.video import probe
from sam_batch.plan.chunks import ChunkSpec
from sam_batch.plan.prompts import Prompt
from sam_batch.plan.tasks import VideoTask
from sam_batch.track.model import ModelSpec
from sam_batch.track.pipeline import TIMELINE
from sam_batch.track.worker import Worker

pytestmark = pytest.mark.slow


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Seconds during which some span of ``a`` and some span of ``b`` both ran."""
    return sum(max(0.0, min(a1, b1) - max(a0, b0)) for a0, a1 in a for b0, b1 in b)


def test_a_1080p_chunk_decodes_and_encodes_masks_while_the_model_tracks(tmp_path):
    url = str(write_video(tmp_path / "hd.mp4", 10, width=1920, height=1080, gop=5))
    info = probe(url)
    prompts = (Prompt(obj_id=1, frame=0, box=(700.0, 300.0, 1200.0, 800.0)),
               Prompt(obj_id=2, frame=0, points=((300.0, 200.0),), labels=(1,)))
    task = VideoTask("hd", url, info, prompts)
    worker = Worker(ModelSpec(random_weights=True, image_size=128, device="cpu"),
                    str(tmp_path / "out"), threads=2)
    state = worker.start_video(task)
    with TIMELINE.recording() as spans:
        result, _ = worker.run_chunk(ChunkSpec("hd", 0, 0, 0, 10), task, lambda wait: state)

    assert result.frames_tracked == 10 and result.rows == 20
    table = pq.read_table(tmp_path / "out" / result.part)
    assert table.num_rows == 20 and set(table["width"].to_pylist()) == {1920}

    by_step: dict[str, list[tuple[float, float]]] = {}
    threads: dict[str, set[str]] = {}
    for step, thread, t0, t1 in spans:
        by_step.setdefault(step, []).append((t0, t1))
        threads.setdefault(step, set()).add(thread)
    assert len(by_step["encode"]) == 10  # one per frame; "track" also spans the last, empty step
    assert len(by_step["prepare"]) >= 9  # frame 0 may come encoded with the prompts
    model_thread = threads["track"]
    assert len(model_thread) == 1
    for step in ("decode", "prepare", "encode"):
        assert not threads[step] & model_thread, f"{step} ran on the model's thread"
        together = _overlap(by_step[step], by_step["track"])
        assert together > 0, f"{step} never ran while the model tracked"


def test_the_preparation_table_gives_sam2s_numbers_for_every_byte_in_every_channel():
    """prepare_frame reads the normalisation from a table: for every value 0..255 in
    each channel (and a resize that mixes them), the same float32 bits as sam2's steps."""
    import numpy as np
    import torch

    from sam_batch.track.frames import prepare_frame, prepare_frame_by_steps

    every = np.arange(256, dtype=np.uint8)
    rgb = np.stack(np.meshgrid(every, every[::-1], indexing="ij"), -1)[..., [0, 1, 0]]
    rgb = np.ascontiguousarray(rgb)
    rgb[..., 2] = np.roll(rgb[..., 2], 7, axis=1)
    for size in (256, 128, 1024):
        assert torch.equal(prepare_frame(rgb, size), prepare_frame_by_steps(rgb, size)), size


@pytest.mark.skipif(__import__("sys").platform != "linux", reason="per-thread nice is Linux's")
def test_host_threads_yield_to_the_thread_that_feeds_the_model():
    """Decode, prepare and encode threads run niced below the model's thread, so the
    model's thread gets a core the moment its step ends."""
    import os
    import threading

    import numpy as np

    from sam_batch.dataset.writer import ChunkMasks
    from sam_batch.track.pipeline import BACKGROUND_NICE, FramePrefetcher, MaskEncoder

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine, seen = nice(), {}

    def frames():
        seen["decode"] = nice()
        yield 0, np.zeros((4, 4, 3), np.uint8)

    def prepare(rgb):
        seen["prepare"] = nice()
        return rgb

    prefetch = FramePrefetcher(frames(), prepare, workers=1)
    assert [idx for idx, _ in prefetch] == [0]
    prefetch.close()
    with MaskEncoder(ChunkMasks("clip", 0), workers=1) as encoder:
        seen["encode"] = encoder._pool.submit(nice).result()
    assert nice() == mine
    expected = min(19, mine + BACKGROUND_NICE)
    assert seen == {"decode": expected, "prepare": expected, "encode": expected}
